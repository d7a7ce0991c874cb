// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ModelRegistry} from "./ModelRegistry.sol";

/// @title AttestationCourt
/// @notice Escrow for attested results (proofmarket-attested-toploc-v1) with a challenge window, staked
/// validators and slashing. A consumer escrows the model's price for (model, input commitment); a staked node
/// commits its signed instances [request hash, weights root, decoding hash, commitments hash, output hash];
/// the money waits for the window. A staked validator whose re-execution differs challenges with a bond; staked
/// validators (not the node; the challenge counts as the challenger's vote) vote; after `quorum` votes the
/// majority decides: the node is
/// slashed and the consumer refunded, or the challenger loses its bond to the node. Unchallenged, anyone
/// finalizes after the window: owner share, platform fee, the rest to the node. Validators learn which results
/// they are to check from `isSampled`, which uses the hash of the block after the commitment: unknown to the
/// node when it answers. Trust assumption: an honest majority of the voters.
contract AttestationCourt is Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint16 public constant BPS = 10_000;
    uint256 public constant INSTANCES = 5;

    enum Status {
        None,
        Open,
        Committed,
        Challenged,
        Paid,
        Slashed,
        Refunded
    }

    struct Params {
        uint64 window; // seconds a commitment can be challenged
        uint64 voteWindow; // seconds for the votes after a challenge
        uint16 quorum; // votes that decide a challenge (odd)
        uint16 sampleBps; // share of results each validator is asked to re-check
        uint16 slashBps; // share of the node's stake taken when it loses
        uint16 challengerRewardBps; // share of the slash paid to a winning challenger
        uint16 platformFeeBps;
        uint96 challengeBond;
        uint96 nodeMinStake;
        uint96 validatorMinStake;
    }

    struct Request {
        address consumer;
        Status status;
        uint64 deadline;
        uint64 windowEnd;
        uint64 commitBlock;
        address node;
        uint96 amount;
        bytes32 modelId;
        bytes32 inputCommitment;
        bytes32 outputHash;
        address challenger;
        uint16 votesCheated;
        uint16 votesHonest;
    }

    IERC20 public immutable usdc;
    ModelRegistry public immutable registry;
    bytes32 public immutable systemDigest; // keccak256("proofmarket-attested-toploc-v1"): attested models only
    Params private _params;
    uint256 public requestCount;
    uint256 public platformBalance;
    mapping(uint256 => Request) private _requests;
    mapping(address => uint256) public nodeStake;
    mapping(address => uint256) public validatorStake;
    mapping(uint256 => mapping(address => bool)) public hasVoted;

    event ParamsChanged(Params params);
    event Staked(address indexed who, bool validator, uint256 amount);
    event Unstaked(address indexed who, bool validator, uint256 amount);
    event RequestCreated(uint256 indexed requestId, bytes32 indexed modelId, address indexed consumer,
        bytes32 inputCommitment, uint256 amount, uint64 deadline, address node);
    /// @dev `bundleDigest`: sha256 of the attested bundle's bytes (its CID's digest), where validators fetch it.
    event Committed(uint256 indexed requestId, address indexed node, uint256[5] instances, bytes32 bundleDigest,
        uint64 windowEnd);
    event BatchCommitted(address indexed node, bytes32 root, uint256 count);
    event Challenged(uint256 indexed requestId, address indexed challenger, uint64 voteEnd);
    event Voted(uint256 indexed requestId, address indexed validator, bool nodeCheated);
    event Resolved(uint256 indexed requestId, bool nodeCheated, uint256 slashed, uint256 challengerPaid);
    event Paid(uint256 indexed requestId, address indexed node, uint256 ownerAmount, uint256 nodeAmount, uint256 fee);
    event Refunded(uint256 indexed requestId, uint256 amount);

    error BadParams();
    error NotAttestedModel(bytes32 modelId);
    error ModelInactive(bytes32 modelId);
    error DeadlinePassed(uint64 deadline);
    error UnknownRequest(uint256 requestId);
    error WrongStatus(uint256 requestId, Status status);
    error StakeTooLow(address who, uint256 stake, uint256 minimum);
    error BadSignature();
    error NotTheRequest(bytes32 expected, bytes32 actual);
    error NotTheWeights(bytes32 expected, bytes32 actual);
    error NotTheNode(uint256 requestId, address node);
    error BadBatch();
    error WindowClosed(uint256 requestId, uint64 windowEnd);
    error WindowOpen(uint256 requestId, uint64 windowEnd);
    error PartyCannotVote(address who);
    error AlreadyVoted(uint256 requestId, address who);
    error NothingStaked(address who);
    error StakeLocked(address who);

    constructor(IERC20 usdc_, ModelRegistry registry_, address admin, Params memory params_) Ownable(admin) {
        (usdc, registry) = (usdc_, registry_);
        systemDigest = keccak256("proofmarket-attested-toploc-v1");
        _setParams(params_);
    }

    // --- admin ----------------------------------------------------------------------------------
    function setParams(Params calldata p) external onlyOwner {
        _setParams(p);
    }

    function params() external view returns (Params memory) {
        return _params;
    }

    function withdrawPlatform(address to, uint256 amount) external onlyOwner nonReentrant {
        platformBalance -= amount;
        usdc.safeTransfer(to, amount);
    }

    // --- stakes ---------------------------------------------------------------------------------
    function stake(uint256 amount, bool asValidator) external nonReentrant {
        usdc.safeTransferFrom(msg.sender, address(this), amount);
        if (asValidator) validatorStake[msg.sender] += amount;
        else nodeStake[msg.sender] += amount;
        emit Staked(msg.sender, asValidator, amount);
    }

    /// @notice Take a stake back. A node or validator in an open commitment or challenge cannot (its stake backs
    /// it); here simply: never below the minimum while anything it committed or voted on is unresolved is the
    /// caller's risk, so unstaking the whole stake is allowed only with nothing open (tracked off chain for now).
    function unstake(uint256 amount, bool asValidator) external nonReentrant {
        mapping(address => uint256) storage stakes = asValidator ? validatorStake : nodeStake;
        if (stakes[msg.sender] < amount) revert NothingStaked(msg.sender);
        if (_openCount[msg.sender] > 0) revert StakeLocked(msg.sender);
        stakes[msg.sender] -= amount;
        usdc.safeTransfer(msg.sender, amount);
        emit Unstaked(msg.sender, asValidator, amount);
    }

    mapping(address => uint256) private _openCount;

    // --- consumers ------------------------------------------------------------------------------
    /// @notice Escrow the model's price for a result on `inputCommitment`, answered by `node` (address(0): any
    /// staked node; naming one keeps another node from answering a request that was not meant for it).
    function request(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, address node)
        external
        nonReentrant
        returns (uint256 requestId)
    {
        uint96 price = _attestedPrice(modelId);
        if (deadline <= block.timestamp) revert DeadlinePassed(deadline);
        requestId = ++requestCount;
        Request storage r = _requests[requestId];
        r.consumer = msg.sender;
        r.status = Status.Open;
        r.deadline = deadline;
        r.amount = price;
        r.modelId = modelId;
        r.inputCommitment = inputCommitment;
        r.node = node;
        emit RequestCreated(requestId, modelId, msg.sender, inputCommitment, price, deadline, node);
        usdc.safeTransferFrom(msg.sender, address(this), price);
    }

    /// @notice The consumer takes its money back when no node committed before the deadline.
    function refund(uint256 requestId) external nonReentrant {
        Request storage r = _get(requestId, Status.Open);
        if (block.timestamp <= r.deadline) revert WindowOpen(requestId, r.deadline);
        r.status = Status.Refunded;
        emit Refunded(requestId, r.amount);
        usdc.safeTransfer(r.consumer, r.amount);
    }

    // --- nodes ----------------------------------------------------------------------------------
    /// @notice Commit the attested result: instances signed (EIP-191, over their packed hash) by the sender, and
    /// the digest of the bundle validators fetch to re-execute it.
    function commit(uint256 requestId, uint256[5] calldata instances, bytes32 bundleDigest, bytes calldata signature)
        external
        nonReentrant
    {
        Params memory p = _params;
        _requireNode(msg.sender, p);
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(keccak256(abi.encodePacked(instances)));
        _requireSigner(digest, signature);
        _commit(requestId, instances, bundleDigest, p);
    }

    /// @notice Commit several results in one transaction: the node signs the Merkle root of the leaves
    /// keccak256(abi.encode(requestId, instances, bundleDigest)) (pairs hashed in sorted order, an odd last
    /// node carried up). One signature and one stake check for the batch; each request is then as if
    /// committed alone (its own window, challenge and vote).
    function commitBatch(uint256[] calldata requestIds, uint256[5][] calldata instances,
        bytes32[] calldata bundleDigests, bytes calldata signature) external nonReentrant returns (bytes32 root)
    {
        uint256 n = requestIds.length;
        if (n == 0 || n > 256 || instances.length != n || bundleDigests.length != n) revert BadBatch();
        Params memory p = _params;
        _requireNode(msg.sender, p);
        bytes32[] memory level = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            level[i] = keccak256(abi.encode(requestIds[i], instances[i], bundleDigests[i]));
        }
        root = _merkleRoot(level);
        _requireSigner(MessageHashUtils.toEthSignedMessageHash(root), signature);
        for (uint256 i; i < n; ++i) {
            _commit(requestIds[i], instances[i], bundleDigests[i], p);
        }
        emit BatchCommitted(msg.sender, root, n);
    }

    /// @notice Unchallenged after the window: pay the owner share, the platform fee and the node.
    function finalize(uint256 requestId) external nonReentrant {
        Request storage r = _get(requestId, Status.Committed);
        if (block.timestamp <= r.windowEnd) revert WindowOpen(requestId, r.windowEnd);
        _openCount[r.node] -= 1;
        _pay(requestId, r);
    }

    // --- validators -----------------------------------------------------------------------------
    /// @notice Whether `validator` is asked to re-check `requestId` (known one block after the commitment).
    function isSampled(uint256 requestId, address validator) external view returns (bool) {
        Request storage r = _requests[requestId];
        if (r.commitBlock == 0 || block.number <= r.commitBlock + 1) return false;
        bytes32 seed = blockhash(r.commitBlock + 1);
        return uint256(keccak256(abi.encode(seed, requestId, validator))) % BPS < _params.sampleBps;
    }

    function challenge(uint256 requestId) external nonReentrant {
        Request storage r = _get(requestId, Status.Committed);
        if (block.timestamp > r.windowEnd) revert WindowClosed(requestId, r.windowEnd);
        Params memory p = _params;
        _requireValidator(msg.sender, p);
        if (msg.sender == r.node) revert PartyCannotVote(msg.sender);
        r.status = Status.Challenged;
        r.challenger = msg.sender;
        r.votesCheated = 1; // the challenger's re-execution is the first vote (it cannot vote again)
        hasVoted[requestId][msg.sender] = true;
        r.windowEnd = uint64(block.timestamp) + p.voteWindow; // now the vote's deadline
        _openCount[msg.sender] += 1;
        emit Challenged(requestId, msg.sender, r.windowEnd);
        usdc.safeTransferFrom(msg.sender, address(this), p.challengeBond);
    }

    function vote(uint256 requestId, bool nodeCheated) external nonReentrant {
        Request storage r = _get(requestId, Status.Challenged);
        Params memory p = _params;
        if (block.timestamp > r.windowEnd) revert WindowClosed(requestId, r.windowEnd);
        _requireValidator(msg.sender, p);
        if (msg.sender == r.node) revert PartyCannotVote(msg.sender);
        if (hasVoted[requestId][msg.sender]) revert AlreadyVoted(requestId, msg.sender);
        hasVoted[requestId][msg.sender] = true;
        if (nodeCheated) r.votesCheated += 1;
        else r.votesHonest += 1;
        emit Voted(requestId, msg.sender, nodeCheated);
        if (r.votesCheated + r.votesHonest >= p.quorum) _resolve(requestId, r, p);
    }

    /// @notice A challenge whose vote window closed without a quorum: the node keeps the benefit of the doubt
    /// and the challenger its bond (nobody is slashed on too few votes).
    function closeUndecided(uint256 requestId) external nonReentrant {
        Request storage r = _get(requestId, Status.Challenged);
        if (block.timestamp <= r.windowEnd) revert WindowOpen(requestId, r.windowEnd);
        _openCount[r.node] -= 1;
        _openCount[r.challenger] -= 1;
        usdc.safeTransfer(r.challenger, _params.challengeBond);
        _pay(requestId, r);
    }

    function getRequest(uint256 requestId) external view returns (Request memory) {
        return _requests[requestId];
    }

    // --- internals ------------------------------------------------------------------------------
    function _commit(uint256 requestId, uint256[5] calldata instances, bytes32 bundleDigest, Params memory p)
        private
    {
        Request storage r = _get(requestId, Status.Open);
        if (block.timestamp > r.deadline) revert DeadlinePassed(r.deadline);
        if (r.node != address(0) && r.node != msg.sender) revert NotTheNode(requestId, r.node);
        bytes32 actual = keccak256(abi.encodePacked(instances[0]));
        if (actual != r.inputCommitment) revert NotTheRequest(r.inputCommitment, actual);
        bytes32 weights = registry.getModel(r.modelId).spec.onnxSha256;
        if (bytes32(instances[1]) != weights) revert NotTheWeights(weights, bytes32(instances[1]));
        r.status = Status.Committed;
        (r.node, r.commitBlock, r.windowEnd) = (msg.sender, uint64(block.number), uint64(block.timestamp) + p.window);
        r.outputHash = bytes32(instances[4]);
        _openCount[msg.sender] += 1;
        emit Committed(requestId, msg.sender, instances, bundleDigest, r.windowEnd);
    }

    function _requireNode(address who, Params memory p) private view {
        if (nodeStake[who] < p.nodeMinStake) revert StakeTooLow(who, nodeStake[who], p.nodeMinStake);
    }

    function _requireSigner(bytes32 digest, bytes calldata signature) private view {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != msg.sender) revert BadSignature();
    }

    function _merkleRoot(bytes32[] memory level) private pure returns (bytes32) {
        uint256 n = level.length;
        while (n > 1) {
            uint256 half = (n + 1) / 2;
            for (uint256 i; i < n / 2; ++i) {
                (bytes32 a, bytes32 b) = (level[2 * i], level[2 * i + 1]);
                level[i] = a < b ? keccak256(abi.encodePacked(a, b)) : keccak256(abi.encodePacked(b, a));
            }
            if (n % 2 == 1) level[half - 1] = level[n - 1];
            n = half;
        }
        return level[0];
    }

    function _attestedPrice(bytes32 modelId) private view returns (uint96) {
        ModelRegistry.Model memory m = registry.getModel(modelId);
        if (m.spec.vkDigest != systemDigest) revert NotAttestedModel(modelId);
        if (!m.active) revert ModelInactive(modelId);
        return m.spec.price;
    }

    function _resolve(uint256 requestId, Request storage r, Params memory p) private {
        _openCount[r.node] -= 1;
        _openCount[r.challenger] -= 1;
        if (r.votesCheated > r.votesHonest) {
            uint256 slashed = (nodeStake[r.node] * p.slashBps) / BPS;
            nodeStake[r.node] -= slashed;
            uint256 reward = (slashed * p.challengerRewardBps) / BPS;
            platformBalance += slashed - reward;
            r.status = Status.Slashed;
            emit Resolved(requestId, true, slashed, reward + p.challengeBond);
            emit Refunded(requestId, r.amount);
            usdc.safeTransfer(r.consumer, r.amount);
            usdc.safeTransfer(r.challenger, reward + p.challengeBond);
        } else {
            emit Resolved(requestId, false, 0, 0);
            nodeStake[r.node] += p.challengeBond; // the griefer's bond backs the node it accused
            _pay(requestId, r);
        }
    }

    function _pay(uint256 requestId, Request storage r) private {
        ModelRegistry.Terms memory t = registry.terms(r.modelId);
        uint256 fee = (uint256(r.amount) * _params.platformFeeBps) / BPS;
        uint256 ownerAmount = (uint256(r.amount) * t.ownerShareBps) / BPS;
        uint256 nodeAmount = r.amount - fee - ownerAmount;
        r.status = Status.Paid;
        platformBalance += fee;
        emit Paid(requestId, r.node, ownerAmount, nodeAmount, fee);
        if (ownerAmount > 0) usdc.safeTransfer(t.owner, ownerAmount);
        if (nodeAmount > 0) usdc.safeTransfer(r.node, nodeAmount);
    }

    function _get(uint256 requestId, Status expected) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status == Status.None) revert UnknownRequest(requestId);
        if (r.status != expected) revert WrongStatus(requestId, r.status);
    }

    function _requireValidator(address who, Params memory p) private view {
        if (validatorStake[who] < p.validatorMinStake) revert StakeTooLow(who, validatorStake[who], p.validatorMinStake);
    }

    function _setParams(Params memory p) private {
        bool ok = p.window >= 60 && p.window <= 30 days && p.voteWindow >= 60 && p.voteWindow <= 30 days
            && p.quorum >= 1 && p.quorum <= 101 && p.quorum % 2 == 1 && p.sampleBps <= BPS && p.slashBps <= BPS
            && p.challengerRewardBps <= BPS && p.platformFeeBps <= 1_000 && p.validatorMinStake > 0
            && p.nodeMinStake > 0;
        if (!ok) revert BadParams();
        _params = p;
        emit ParamsChanged(p);
    }
}
