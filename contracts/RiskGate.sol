// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IInferenceMarketCallbacks, InferenceConsumer} from "./InferenceConsumer.sol";

/// @title RiskGate: an example dApp that acts on a model's proven risk score (docs/guides/callbacks.md).
/// @notice Its owner (a lender) funds it with USDC and asks for an applicant's score with `requestScore`: the
/// market escrows the listing's price and a tip, a prover proves the model on the applicant's committed features,
/// and the verified score arrives in `_onResult`, which decides at once: approved when the score is at most
/// `maxScore` (fixed point at the model's output scale). Nobody can feed it a score the market did not verify.
contract RiskGate is InferenceConsumer {
    struct Application {
        address applicant;
        bool decided;
        bool approved;
        int256 score;
    }

    address public immutable owner;
    int256 public immutable maxScore;
    uint256 public immutable outputIndex; // which output instance is the score

    mapping(uint256 requestId => Application) public applications;

    event Decided(uint256 indexed requestId, address indexed applicant, int256 score, bool approved);

    error NotOwner(address caller);
    error UnknownApplication(uint256 requestId);

    constructor(IInferenceMarketCallbacks market_, int256 maxScore_, uint256 outputIndex_)
        InferenceConsumer(market_)
    {
        owner = msg.sender;
        (maxScore, outputIndex) = (maxScore_, outputIndex_);
    }

    /// @notice Ask for `applicant`'s score on the features committed in `inputCommitment` (posted to the node
    /// off chain); pays `price + tip` from this contract's USDC.
    function requestScore(
        address applicant,
        bytes32 modelId,
        bytes32 inputCommitment,
        uint64 deadline,
        uint96 price,
        uint24 callbackGas,
        uint96 tip
    ) external returns (uint256 requestId) {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        requestId = _requestInference(modelId, inputCommitment, deadline, price, callbackGas, tip);
        applications[requestId].applicant = applicant;
    }

    /// @notice Take an unanswered request's escrow back after its deadline (to this contract).
    function refund(uint256 requestId) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _refundRequest(requestId);
    }

    function _onResult(uint256 requestId, bytes32, uint256[] calldata outputs) internal override {
        Application storage a = applications[requestId];
        if (a.applicant == address(0)) revert UnknownApplication(requestId);
        int256 score = _signed(outputs[outputIndex]);
        (a.decided, a.score, a.approved) = (true, score, score <= maxScore);
        emit Decided(requestId, a.applicant, score, a.approved);
    }
}
