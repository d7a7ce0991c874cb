// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IdentityRegistry} from "./IdentityRegistry.sol";
import {ValidationRegistry} from "./ValidationRegistry.sol";
import {AttestationCourt} from "./AttestationCourt.sol";

/// @title CourtValidator
/// @notice The ERC-8004 validator of attested work: it answers from the AttestationCourt's verdict, never from a
/// person. A node (the agent's owner) asks it for a validation of a court request in the ValidationRegistry;
/// once the request is settled anyone calls `validate`: 100 when the node was paid (its result passed the
/// challenge window, or a challenge against it lost the vote), 0 when it was slashed. The request hash is
/// keccak256(abi.encode(chainid, court, requestId)); the response hash is the committed output hash.
contract CourtValidator {
    ValidationRegistry public immutable validation;
    IdentityRegistry public immutable identity;
    AttestationCourt public immutable court;

    error NotAskedOfThisValidator(bytes32 requestHash);
    error NotTheAgentsWork(uint256 agentId, address node);
    error RequestNotSettled(uint256 requestId);

    constructor(ValidationRegistry validation_, IdentityRegistry identity_, AttestationCourt court_) {
        (validation, identity, court) = (validation_, identity_, court_);
    }

    function requestHashOf(uint256 requestId) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(court), requestId));
    }

    function validate(uint256 requestId) external returns (uint8 response) {
        bytes32 requestHash = requestHashOf(requestId);
        (address validator, uint256 agentId,,,,) = validation.getValidationStatus(requestHash);
        if (validator != address(this)) revert NotAskedOfThisValidator(requestHash);
        AttestationCourt.Request memory r = court.getRequest(requestId);
        if (r.node != identity.ownerOf(agentId)) revert NotTheAgentsWork(agentId, r.node);
        if (r.status == AttestationCourt.Status.Paid) response = 100;
        else if (r.status != AttestationCourt.Status.Slashed) revert RequestNotSettled(requestId);
        validation.validationResponse(requestHash, response, "", r.outputHash, "attested-court");
    }
}
