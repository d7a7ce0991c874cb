// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IdentityRegistry} from "./IdentityRegistry.sol";

/// @title ValidationRegistry (ERC-8004 Trustless Agents: validation)
/// @notice Written from the ERC-8004 interface: an agent's owner or operator asks a validator to check a piece
/// of work (requestURI, requestHash); only that validator answers, with a response 0..100 (it may update it).
contract ValidationRegistry {
    struct Status {
        address validatorAddress;
        uint256 agentId;
        uint8 response;
        bytes32 responseHash;
        string tag;
        uint256 lastUpdate;
        bool responded;
    }

    IdentityRegistry private immutable _identity;
    mapping(bytes32 requestHash => Status) private _status;
    mapping(uint256 agentId => bytes32[]) private _agentValidations;
    mapping(address validator => bytes32[]) private _validatorRequests;

    event ValidationRequest(address indexed validatorAddress, uint256 indexed agentId, string requestURI,
        bytes32 indexed requestHash);
    event ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash,
        uint8 response, string responseURI, bytes32 responseHash, string tag);

    error NotAgentOwnerOrOperator(uint256 agentId, address caller);
    error RequestExists(bytes32 requestHash);
    error UnknownValidation(bytes32 requestHash);
    error NotTheValidator(bytes32 requestHash, address caller);
    error ResponseOutOfRange(uint8 response);
    error ZeroValidator();

    constructor(IdentityRegistry identity) {
        _identity = identity;
    }

    function getIdentityRegistry() external view returns (address) {
        return address(_identity);
    }

    function validationRequest(address validatorAddress, uint256 agentId, string calldata requestURI,
        bytes32 requestHash) external
    {
        if (validatorAddress == address(0)) revert ZeroValidator();
        if (!_identity.isOwnerOrOperator(agentId, msg.sender)) revert NotAgentOwnerOrOperator(agentId, msg.sender);
        if (_status[requestHash].validatorAddress != address(0)) revert RequestExists(requestHash);
        _status[requestHash] = Status(validatorAddress, agentId, 0, bytes32(0), "", block.timestamp, false);
        _agentValidations[agentId].push(requestHash);
        _validatorRequests[validatorAddress].push(requestHash);
        emit ValidationRequest(validatorAddress, agentId, requestURI, requestHash);
    }

    function validationResponse(bytes32 requestHash, uint8 response, string calldata responseURI,
        bytes32 responseHash, string calldata tag) external
    {
        Status storage s = _status[requestHash];
        if (s.validatorAddress == address(0)) revert UnknownValidation(requestHash);
        if (s.validatorAddress != msg.sender) revert NotTheValidator(requestHash, msg.sender);
        if (response > 100) revert ResponseOutOfRange(response);
        (s.response, s.responseHash, s.tag, s.lastUpdate, s.responded) =
            (response, responseHash, tag, block.timestamp, true);
        emit ValidationResponse(msg.sender, s.agentId, requestHash, response, responseURI, responseHash, tag);
    }

    function getValidationStatus(bytes32 requestHash)
        external
        view
        returns (address validatorAddress, uint256 agentId, uint8 response, bytes32 responseHash, string memory tag,
            uint256 lastUpdate)
    {
        Status storage s = _status[requestHash];
        if (s.validatorAddress == address(0)) revert UnknownValidation(requestHash);
        return (s.validatorAddress, s.agentId, s.response, s.responseHash, s.tag, s.lastUpdate);
    }

    /// @notice Count and average response of the answered validations of `agentId` by `validatorAddresses` (all
    /// when empty) with `tag` (any when empty).
    function getSummary(uint256 agentId, address[] calldata validatorAddresses, string calldata tag)
        external
        view
        returns (uint64 count, uint8 avgResponse)
    {
        bytes32[] storage hashes = _agentValidations[agentId];
        uint256 total;
        for (uint256 i = 0; i < hashes.length; i++) {
            Status storage s = _status[hashes[i]];
            if (!s.responded || !_listed(s.validatorAddress, validatorAddresses)) continue;
            if (bytes(tag).length > 0 && keccak256(bytes(s.tag)) != keccak256(bytes(tag))) continue;
            total += s.response;
            count++;
        }
        avgResponse = count == 0 ? 0 : uint8(total / count);
    }

    function getAgentValidations(uint256 agentId) external view returns (bytes32[] memory) {
        return _agentValidations[agentId];
    }

    function getValidatorRequests(address validatorAddress) external view returns (bytes32[] memory) {
        return _validatorRequests[validatorAddress];
    }

    function _listed(address who, address[] calldata list) private pure returns (bool) {
        if (list.length == 0) return true;
        for (uint256 i = 0; i < list.length; i++) {
            if (list[i] == who) return true;
        }
        return false;
    }
}
