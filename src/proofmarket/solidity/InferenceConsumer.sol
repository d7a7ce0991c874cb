// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @notice What InferenceMarket calls on a request's consumer once a proof of the result verified
/// (`requestInferenceWithCallback`). `outputs` are the proof's output instances: EZKL's fixed-point field elements
/// (a negative value v is the field modulus minus |v|; divide by 2^scale of the model's output, `InferenceConsumer`
/// decodes them).
interface IInferenceConsumer {
    function onInferenceResult(uint256 requestId, bytes32 modelId, uint256[] calldata outputs) external;
}

/// @notice The market's side of a callback request, as a consumer contract sees it.
interface IInferenceMarketCallbacks {
    function usdc() external view returns (IERC20);
    function requestInferenceWithCallback(bytes32 modelId, bytes32 inputCommitment, uint64 deadline,
        uint24 callbackGas, uint96 tip) external returns (uint256 requestId);
    function refund(uint256 requestId) external;
}

/// @title InferenceConsumer: a base for contracts that act on proven inferences.
/// @notice Request with `_requestInference` (the contract pays the listing's price plus `tip` from its own USDC;
/// the tip goes to the prover, whose transaction pays the callback's gas), then receive the verified output in
/// `_onResult`, called only by the market, only for a proof the market verified, at most `callbackGas` gas. A
/// callback that reverts or runs out of gas never blocks the payment: the market records it
/// (`CallbackDelivered(requestId, consumer, false)`) and anyone may deliver it again with the outputs of the
/// `RequestFulfilled` event (`retryCallback`). The market calls nothing else here, and a callback cannot re-enter
/// the market's paying functions (they are non-reentrant).
abstract contract InferenceConsumer is IInferenceConsumer {
    using SafeERC20 for IERC20;

    /// @notice EZKL's field (BN254's scalar field): outputs above half of it are negative.
    uint256 internal constant FIELD_MODULUS =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    IInferenceMarketCallbacks public immutable market;

    error NotTheMarket(address caller);

    constructor(IInferenceMarketCallbacks market_) {
        market = market_;
    }

    function onInferenceResult(uint256 requestId, bytes32 modelId, uint256[] calldata outputs) external {
        if (msg.sender != address(market)) revert NotTheMarket(msg.sender);
        _onResult(requestId, modelId, outputs);
    }

    /// @notice Escrow `price + tip` (this contract's USDC) for a result on `inputCommitment`, delivered to
    /// `_onResult` with `callbackGas` gas.
    function _requestInference(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, uint96 price,
        uint24 callbackGas, uint96 tip) internal returns (uint256 requestId) {
        IERC20 usdc = market.usdc();
        usdc.forceApprove(address(market), uint256(price) + tip);
        requestId = market.requestInferenceWithCallback(modelId, inputCommitment, deadline, callbackGas, tip);
    }

    /// @notice Take back request `requestId`'s escrow (price and tip, and a lapsed claimer's bond) once its deadline
    /// passed without a fulfilment: the market pays it to the request's consumer, this contract, and to no one else.
    /// Expose it as the contract's rules say (its owner, or anyone: the money comes back here either way); a
    /// consumer that never calls it leaves an unanswered request's escrow in the market for good.
    function _refundRequest(uint256 requestId) internal {
        market.refund(requestId);
    }

    /// @notice The verified output of request `requestId` (only the market calls it).
    function _onResult(uint256 requestId, bytes32 modelId, uint256[] calldata outputs) internal virtual;

    /// @notice A field element as the signed fixed-point integer it encodes (divide by 2^scale for the value).
    function _signed(uint256 felt) internal pure returns (int256) {
        return felt > FIELD_MODULUS / 2 ? -int256(FIELD_MODULUS - felt) : int256(felt);
    }
}
