// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IdentityRegistry} from "./IdentityRegistry.sol";
import {ValidationRegistry} from "./ValidationRegistry.sol";
import {InferenceMarket} from "./InferenceMarket.sol";
import {ModelRegistry} from "./ModelRegistry.sol";

interface IZkVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}

/// @title ZkValidator
/// @notice The ERC-8004 validator of zero-knowledge-proven work: its responses come from chain state, never from
/// a person. A node (the agent's owner) asks it for a validation in the ValidationRegistry, then anyone calls:
/// - validateRequest: an escrow request of the market, answered 100 when the market fulfilled it (the model's
///   verifier accepted the proof) and 0 when it rejected it; the request's prover must own the agent;
/// - validateProof: any proof (an x402 call), verified here by the model's registered verifier: 100 or 0.
/// The request hash binds the evidence: keccak256(abi.encode(chainid, market, requestId)) for a request,
/// keccak256(abi.encode(chainid, modelId, keccak256(proof), keccak256(abi.encodePacked(instances)))) for a proof.
contract ZkValidator {
    ValidationRegistry public immutable validation;
    IdentityRegistry public immutable identity;
    ModelRegistry public immutable registry;
    InferenceMarket public immutable market;

    error NotAskedOfThisValidator(bytes32 requestHash);
    error WrongRequestHash(bytes32 requestHash, bytes32 expected);
    error NotTheAgentsWork(uint256 agentId, address prover);
    error RequestNotSettled(uint256 requestId);
    error VerifierOutOfGas();

    constructor(ValidationRegistry validation_, IdentityRegistry identity_, ModelRegistry registry_,
        InferenceMarket market_) {
        (validation, identity, registry, market) = (validation_, identity_, registry_, market_);
    }

    function requestHashOf(uint256 requestId) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(market), requestId));
    }

    function proofHashOf(bytes32 modelId, bytes calldata proof, uint256[] calldata instances)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, modelId, keccak256(proof), keccak256(abi.encodePacked(instances))));
    }

    function validateRequest(uint256 requestId) external returns (uint8 response) {
        bytes32 requestHash = requestHashOf(requestId);
        uint256 agentId = _askedAgent(requestHash);
        InferenceMarket.Request memory r = market.getRequest(requestId);
        if (r.prover != identity.ownerOf(agentId)) revert NotTheAgentsWork(agentId, r.prover);
        if (r.status == InferenceMarket.Status.Fulfilled) response = 100;
        else if (r.status != InferenceMarket.Status.Rejected) revert RequestNotSettled(requestId);
        validation.validationResponse(requestHash, response, "", r.outputHash, "zk-escrow");
    }

    function validateProof(bytes32 modelId, bytes calldata proof, uint256[] calldata instances)
        external
        returns (uint8 response)
    {
        bytes32 requestHash = proofHashOf(modelId, proof, instances);
        _askedAgent(requestHash);
        address verifier = registry.getModel(modelId).spec.verifier;
        uint256 gasBefore = gasleft();
        try IZkVerifier(verifier).verifyProof(proof, instances) returns (bool ok) {
            response = ok ? 100 : 0;
        } catch (bytes memory reason) {
            // out of gas (here, or in a verifier it calls, which says so) is the caller's doing, not the proof's: no
            // verdict (an honest node is never marked 0 so)
            if (gasleft() <= gasBefore / 63 || (reason.length >= 4 && bytes4(reason) == VerifierOutOfGas.selector)) {
                revert VerifierOutOfGas();
            }
            response = 0;
        }
        validation.validationResponse(requestHash, response, "", keccak256(abi.encodePacked(instances)), "zk-proof");
    }

    function _askedAgent(bytes32 requestHash) private view returns (uint256 agentId) {
        address validator;
        (validator, agentId,,,,) = validation.getValidationStatus(requestHash);
        if (validator != address(this)) revert NotAskedOfThisValidator(requestHash);
    }
}
