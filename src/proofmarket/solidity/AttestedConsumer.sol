// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @notice What CourtCallbacks calls on a consumer contract once the court paid an attested result (no challenge
/// won against it): the request id, the listing's model id, the committed output hash (the bundle's `output.hash`)
/// and the bundle's sha256 digest (its CID: raw codec, sha2-256).
interface IAttestedConsumer {
    function onAttestedResult(uint256 requestId, bytes32 modelId, bytes32 outputHash, bytes32 bundleDigest) external;
}

/// @notice The CourtCallbacks side of a request, as a consumer contract sees it.
interface ICourtCallbacks {
    function usdc() external view returns (IERC20);
    function request(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, address node, uint96 maxPrice,
        uint24 callbackGas, uint96 tip) external returns (uint256 requestId);
}

/// @title AttestedOutputs: an attested result's output, checked against the hash the court or market holds.
/// @notice An attested result commits to its output by hash only; whoever holds the bundle hands the output in, and
/// these functions recompute the bundle's `output.hash` (the rules of `proofmarket.systems.attested.documents`):
/// - a generation's tokens: keccak256 of each token as a big-endian uint32, one after the other;
/// - an ONNX model's values: keccak256 of each output tensor as its length (big-endian uint32) followed by its
///   values as big-endian IEEE-754 float64 (hand in each value's 64-bit pattern).
/// `toFixed` turns a float64 into the signed fixed-point integer `value * 10**decimals`, rounded half away from
/// zero, so negative, zero and positive outputs are compared and acted on as integers.
library AttestedOutputs {
    error NotFinite(uint64 bits);
    error TooLarge(uint64 bits, uint8 decimals);

    function tokensHash(uint32[] memory tokens) internal pure returns (bytes32) {
        bytes memory packed = new bytes(tokens.length * 4);
        for (uint256 i = 0; i < tokens.length; i++) {
            bytes4 word = bytes4(tokens[i]);
            for (uint256 j = 0; j < 4; j++) packed[i * 4 + j] = word[j];
        }
        return keccak256(packed);
    }

    function valuesHash(uint64[][] memory outputs) internal pure returns (bytes32) {
        bytes memory packed;
        for (uint256 i = 0; i < outputs.length; i++) {
            packed = bytes.concat(packed, bytes4(uint32(outputs[i].length)));
            for (uint256 j = 0; j < outputs[i].length; j++) packed = bytes.concat(packed, bytes8(outputs[i][j]));
        }
        return keccak256(packed);
    }

    /// @notice The float64 with bit pattern `bits`, times 10**decimals, rounded half away from zero (exact: no
    /// floating point is involved). Reverts on NaN and infinities, and when the result does not fit an int256.
    function toFixed(uint64 bits, uint8 decimals) internal pure returns (int256) {
        uint256 exponent = (bits >> 52) & 0x7FF;
        uint256 mantissa = bits & ((uint256(1) << 52) - 1);
        if (exponent == 0x7FF) revert NotFinite(bits);
        if (exponent == 0) exponent = 1; // subnormal: no implicit bit
        else mantissa |= uint256(1) << 52;
        if (decimals > 38) revert TooLarge(bits, decimals);
        uint256 scaled = mantissa * 10 ** decimals; // < 2^53 * 10^38 < 2^180
        uint256 magnitude;
        if (exponent >= 1075) {
            uint256 shift = exponent - 1075;
            if (scaled > (type(uint256).max >> 1) >> shift) revert TooLarge(bits, decimals);
            magnitude = scaled << shift;
        } else {
            uint256 shift = 1075 - exponent;
            if (shift > 200) return 0; // below 2^-1022 * 2^180: rounds to zero
            magnitude = (scaled + (uint256(1) << (shift - 1))) >> shift;
        }
        return bits >> 63 == 1 ? -int256(magnitude) : int256(magnitude);
    }
}

/// @title AttestedConsumer: a base for contracts that act on attested results paid by the court.
/// @notice Request with `_requestAttested` through the court's CourtCallbacks (this contract pays at most
/// `maxPrice` plus `tip` from its own USDC; what the court does not take comes back), then receive the result in
/// `_onAttestedResult`, called only by CourtCallbacks, only for a result the court paid, with at most `callbackGas`
/// gas. The callback carries the output's hash: check an output handed in later with `AttestedOutputs`.
abstract contract AttestedConsumer is IAttestedConsumer {
    using SafeERC20 for IERC20;

    ICourtCallbacks public immutable callbacks;

    error NotTheCallbacks(address caller);

    constructor(ICourtCallbacks callbacks_) {
        callbacks = callbacks_;
    }

    function onAttestedResult(uint256 requestId, bytes32 modelId, bytes32 outputHash, bytes32 bundleDigest)
        external
    {
        if (msg.sender != address(callbacks)) revert NotTheCallbacks(msg.sender);
        _onAttestedResult(requestId, modelId, outputHash, bundleDigest);
    }

    /// @notice Request an attested result from `node`, paying at most `maxPrice` plus `tip` from this contract.
    function _requestAttested(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, address node,
        uint96 maxPrice, uint24 callbackGas, uint96 tip) internal returns (uint256 requestId) {
        callbacks.usdc().forceApprove(address(callbacks), uint256(maxPrice) + tip);
        requestId = callbacks.request(modelId, inputCommitment, deadline, node, maxPrice, callbackGas, tip);
    }

    /// @notice The court paid request `requestId`'s result (only CourtCallbacks calls it).
    function _onAttestedResult(uint256 requestId, bytes32 modelId, bytes32 outputHash, bytes32 bundleDigest)
        internal virtual;
}
