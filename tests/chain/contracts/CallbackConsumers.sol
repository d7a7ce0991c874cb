// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IInferenceMarketCallbacks, InferenceConsumer} from "../../../contracts/InferenceConsumer.sol";
import {AttestedConsumer, ICourtCallbacks} from "../../../contracts/AttestedConsumer.sol";

/// @notice What both test consumers do wrong on demand in their callback: `mode` 1 reverts, 2 burns all its gas
/// (0 and the others: nothing); `setMode` switches it later (to deliver a failed callback again).
abstract contract Misbehaving {
    uint8 public mode;

    constructor(uint8 mode_) {
        mode = mode_;
    }

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function _misbehave() internal view {
        if (mode == 1) revert("consumer refuses");
        if (mode == 2) {
            uint256 x;
            while (true) x += 1;
        }
    }
}

/// @notice Consumers that misbehave in their callback, for tests/market/test_market_callbacks.py. `mode`:
/// 0 records the result, 1 reverts, 2 burns all its gas, 3 re-enters the market (retryCallback and refund) and
/// records that both were refused. Each can be switched to 0 later (to retry a failed callback).
contract TestConsumer is InferenceConsumer, Misbehaving {
    uint256 public received;
    uint256 public lastRequest;
    uint256[] private _last;
    bool public reentryRefused;

    constructor(IInferenceMarketCallbacks market_, uint8 mode_) InferenceConsumer(market_) Misbehaving(mode_) {}

    function request(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, uint96 price, uint24 callbackGas,
        uint96 tip) external returns (uint256) {
        return _requestInference(modelId, inputCommitment, deadline, price, callbackGas, tip);
    }

    function lastOutputs() external view returns (uint256[] memory) {
        return _last;
    }

    /// @notice The base's decoding of one field element, for the tests.
    function signedOf(uint256 felt) external pure returns (int256) {
        return _signed(felt);
    }

    function _onResult(uint256 requestId, bytes32, uint256[] calldata outputs) internal override {
        _misbehave();
        if (mode == 3) {
            bool retried;
            bool refunded;
            try market.refund(requestId) { refunded = true; } catch {}
            (retried,) = address(market).call(abi.encodeWithSignature("retryCallback(uint256,uint256[])",
                requestId, outputs));
            reentryRefused = !retried && !refunded;
        }
        (received, lastRequest) = (received + 1, requestId);
        _last = outputs;
    }
}

/// @notice An attested-result consumer: `mode` 0 records, 1 reverts, 2 burns its gas.
contract TestAttestedConsumer is AttestedConsumer, Misbehaving {
    uint256 public received;
    bytes32 public lastOutputHash;
    bytes32 public lastBundleDigest;

    constructor(ICourtCallbacks callbacks_, uint8 mode_) AttestedConsumer(callbacks_) Misbehaving(mode_) {}

    function request(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, address node, uint96 maxPrice,
        uint24 callbackGas, uint96 tip) external returns (uint256) {
        return _requestAttested(modelId, inputCommitment, deadline, node, maxPrice, callbackGas, tip);
    }

    function _onAttestedResult(uint256, bytes32, bytes32 outputHash, bytes32 bundleDigest) internal override {
        _misbehave();
        (received, lastOutputHash, lastBundleDigest) = (received + 1, outputHash, bundleDigest);
    }
}
