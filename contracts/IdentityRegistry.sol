// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";

/// @title IdentityRegistry (ERC-8004 Trustless Agents: identity)
/// @notice Written from the ERC-8004 interface: each agent is an ERC-721 token whose URI is its registration
/// file (type, name, services, x402Support, registrations, supportedTrust); free-form metadata per agent.
contract IdentityRegistry is ERC721URIStorage {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    uint256 private _lastId;
    mapping(uint256 agentId => mapping(string key => bytes value)) private _metadata;

    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event MetadataSet(uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey,
        bytes metadataValue);
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);

    error NotAgentOwnerOrOperator(uint256 agentId, address caller);

    constructor() ERC721("ERC-8004 Trustless Agent", "AGENT") {}

    function register() external returns (uint256 agentId) {
        return _register(msg.sender, "", new MetadataEntry[](0));
    }

    function register(string calldata agentURI) external returns (uint256 agentId) {
        return _register(msg.sender, agentURI, new MetadataEntry[](0));
    }

    function register(string calldata agentURI, MetadataEntry[] calldata metadata) external returns (uint256 agentId) {
        return _register(msg.sender, agentURI, metadata);
    }

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _requireOwnerOrOperator(agentId);
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    function setMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue) external {
        _requireOwnerOrOperator(agentId);
        _metadata[agentId][metadataKey] = metadataValue;
        emit MetadataSet(agentId, metadataKey, metadataKey, metadataValue);
    }

    function getMetadata(uint256 agentId, string calldata metadataKey) external view returns (bytes memory) {
        _requireOwned(agentId);
        return _metadata[agentId][metadataKey];
    }

    /// @notice True when `account` owns `agentId` or is approved for it (the other registries' access rule).
    function isOwnerOrOperator(uint256 agentId, address account) public view returns (bool) {
        address owner = _ownerOf(agentId);
        return owner != address(0) && _isAuthorized(owner, account, agentId);
    }

    function totalAgents() external view returns (uint256) {
        return _lastId;
    }

    function _register(address owner, string memory agentURI, MetadataEntry[] memory metadata)
        private
        returns (uint256 agentId)
    {
        agentId = ++_lastId;
        _safeMint(owner, agentId);
        if (bytes(agentURI).length > 0) _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, owner);
        for (uint256 i = 0; i < metadata.length; i++) {
            _metadata[agentId][metadata[i].metadataKey] = metadata[i].metadataValue;
            emit MetadataSet(agentId, metadata[i].metadataKey, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    function _requireOwnerOrOperator(uint256 agentId) private view {
        if (!isOwnerOrOperator(agentId, msg.sender)) revert NotAgentOwnerOrOperator(agentId, msg.sender);
    }
}
