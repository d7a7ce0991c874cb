// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IdentityRegistry} from "./IdentityRegistry.sol";

/// @title ReputationRegistry (ERC-8004 Trustless Agents: reputation)
/// @notice Written from the ERC-8004 interface: clients give an agent signed-by-transaction feedback (a value
/// with decimals and two tags); an agent's owner or operator cannot rate itself; feedback can be revoked by
/// its author; summaries filter by client list and tags.
contract ReputationRegistry {
    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        string tag1;
        string tag2;
        bool isRevoked;
    }

    struct Texts {
        string tag1;
        string tag2;
        string endpoint;
        string feedbackURI;
        bytes32 feedbackHash;
    }

    IdentityRegistry private immutable _identity;
    mapping(uint256 agentId => mapping(address client => Feedback[])) private _feedback;
    mapping(uint256 agentId => address[]) private _clients;
    mapping(uint256 agentId => mapping(address client => bool)) private _isClient;

    event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, int128 value,
        uint8 valueDecimals, string indexed indexedTag1, string tag1, string tag2, string endpoint,
        string feedbackURI, bytes32 feedbackHash);
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
    event ResponseAppended(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex,
        address indexed responder, string responseURI, bytes32 responseHash);

    error UnknownAgent(uint256 agentId);
    error SelfFeedback(uint256 agentId);
    error BadDecimals(uint8 valueDecimals);
    error UnknownFeedback(uint256 agentId, address client, uint64 feedbackIndex);

    constructor(IdentityRegistry identity) {
        _identity = identity;
    }

    function getIdentityRegistry() external view returns (address) {
        return address(_identity);
    }

    function giveFeedback(uint256 agentId, int128 value, uint8 valueDecimals, string memory tag1,
        string memory tag2, string memory endpoint, string memory feedbackURI, bytes32 feedbackHash)
        external
    {
        if (agentId == 0 || agentId > _identity.totalAgents()) revert UnknownAgent(agentId);
        if (_identity.isOwnerOrOperator(agentId, msg.sender)) revert SelfFeedback(agentId);
        if (valueDecimals > 18) revert BadDecimals(valueDecimals);
        Feedback[] storage list = _feedback[agentId][msg.sender];
        list.push(Feedback(value, valueDecimals, tag1, tag2, false));
        if (!_isClient[agentId][msg.sender]) {
            _isClient[agentId][msg.sender] = true;
            _clients[agentId].push(msg.sender);
        }
        _emitFeedback(agentId, uint64(list.length), value, valueDecimals,
            Texts(tag1, tag2, endpoint, feedbackURI, feedbackHash));
    }

    /// @dev The event in its own frame (memory strings) keeps giveFeedback's stack shallow without via-IR.
    function _emitFeedback(uint256 agentId, uint64 index, int128 value, uint8 valueDecimals, Texts memory t) private {
        emit NewFeedback(agentId, msg.sender, index, value, valueDecimals, t.tag1, t.tag1, t.tag2, t.endpoint,
            t.feedbackURI, t.feedbackHash);
    }

    /// @notice Feedback indexes start at 1 (0 means none).
    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        Feedback storage f = _at(agentId, msg.sender, feedbackIndex);
        f.isRevoked = true;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    function appendResponse(uint256 agentId, address clientAddress, uint64 feedbackIndex,
        string calldata responseURI, bytes32 responseHash) external {
        _at(agentId, clientAddress, feedbackIndex);
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash);
    }

    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (int128 value, uint8 valueDecimals, string memory tag1, string memory tag2, bool isRevoked)
    {
        Feedback storage f = _at(agentId, clientAddress, feedbackIndex);
        return (f.value, f.valueDecimals, f.tag1, f.tag2, f.isRevoked);
    }

    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return uint64(_feedback[agentId][clientAddress].length);
    }

    function getClients(uint256 agentId) external view returns (address[] memory) {
        return _clients[agentId];
    }

    /// @notice Count and average (18 decimals) of the non-revoked feedback of `clientAddresses` (all clients when
    /// empty) whose tags match (an empty tag matches any).
    function getSummary(uint256 agentId, address[] calldata clientAddresses, string calldata tag1,
        string calldata tag2) external view returns (uint64 count, int128 summaryValue, uint8 summaryValueDecimals)
    {
        address[] memory clients = clientAddresses;
        if (clients.length == 0) clients = _clients[agentId];
        int256 total;
        for (uint256 c = 0; c < clients.length; c++) {
            Feedback[] storage list = _feedback[agentId][clients[c]];
            for (uint256 i = 0; i < list.length; i++) {
                Feedback storage f = list[i];
                if (f.isRevoked || !_matches(f.tag1, tag1) || !_matches(f.tag2, tag2)) continue;
                total += int256(f.value) * int256(10 ** (18 - uint256(f.valueDecimals)));
                count++;
            }
        }
        summaryValueDecimals = 18;
        if (count == 0) return (0, 0, 18);
        // an average beyond int128 (one extreme feedback scaled to 18 decimals) is clamped, never wrapped: a single
        // feedback must not turn an agent's summary negative, nor make it revert for everyone
        int256 average = total / int256(uint256(count));
        if (average > type(int128).max) average = type(int128).max;
        if (average < type(int128).min) average = type(int128).min;
        summaryValue = int128(average);
    }

    function _at(uint256 agentId, address client, uint64 feedbackIndex) private view returns (Feedback storage) {
        Feedback[] storage list = _feedback[agentId][client];
        if (feedbackIndex == 0 || feedbackIndex > list.length) revert UnknownFeedback(agentId, client, feedbackIndex);
        return list[feedbackIndex - 1];
    }

    function _matches(string storage value, string calldata wanted) private pure returns (bool) {
        return bytes(wanted).length == 0 || keccak256(bytes(value)) == keccak256(bytes(wanted));
    }
}
