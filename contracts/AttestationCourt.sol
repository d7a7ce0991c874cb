// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {StakeCheckpoints} from "./StakeCheckpoints.sol";

/// @title AttestationCourt
/// @notice Escrow for attested results (proofmarket-attested-toploc-v1) with a challenge window, staked
/// validators, stake-weighted votes and slashing.
///
/// A consumer escrows the model's price for (model, input commitment, named node); the node commits its signed
/// instances [request hash, weights root, decoding hash, commitments hash, output hash] and the sha256 digest of
/// its bundle; the money waits for the window. Every request keeps the parameters in force when it was created
/// (a version): later changes (scheduled, applied after `paramsDelay`) never touch it.
///
/// Votes cost what they decide. A validator's weight on a request is its stake as it stood at the end of the block
/// before the commitment (a checkpoint), capped by what it still has bonded: stake moved in after the commitment
/// weighs nothing. A vote puts `voterSlashBps` of its weight at risk (at most the stake not already at risk in
/// other unclaimed votes) and locks the whole stake (no unstake) until the vote is claimed; a validator on the
/// losing side loses that share to the winners, pro rata. A challenge is the challenger's vote. A side wins at once when it holds more than half of the weight that
/// could vote (the bonded stake of the model's declared validators at the snapshot, less the parties'); otherwise at the vote's end the
/// weighted majority decides if at least `quorumBps` of that weight voted, else nobody is slashed.
///
/// Availability is decided by a rule all can check, not by one validator's fetch: a validator that cannot get a
/// bundle challenges its availability; the node (or anyone holding it) then publishes the bundle on chain within
/// `responseWindow` (its sha256 must be the committed digest) and the challenger takes its bond back, or the node
/// is slashed as if it had cheated. A published bundle opens a fresh challenge window.
///
/// Validators learn which results to check from `isSampled` (the hash of the block after the commitment, unknown to
/// the node when it answers; stored by the first challenge or finalization; a seed no longer in the chain's 256-block
/// memory and never stored counts as "sampled"). A validator counts only for the models it declared it can check
/// (`declare`, before the commitment): its weight on another model's request is 0, and the weight that could vote
/// on a request is the stake of the model's declared validators, so validators that cannot check a model never
/// stall its quorum. `canRead`
/// says who a node serves a committed bundle to: validators with weight on the request that were drawn for it, or
/// any of them once it is challenged. Unstaking a validator's stake waits `unbondDelay`.
contract AttestationCourt is Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using StakeCheckpoints for Checkpoints.Trace208; // linked, not inlined: the court's size

    uint16 internal constant BPS = 10_000;
    uint64 internal constant MAX_PARAMS_DELAY = 30 days;
    uint256 internal constant MAX_PUBLISHED_BYTES = 256 * 1024;
    uint256 public constant MAX_DECLARED = 16; // models one validator may declare (each stake change updates them)

    enum Status {
        None,
        Open,
        Committed,
        Challenged,
        Paid,
        Slashed,
        Refunded,
        Withheld // challenged for availability: the node must publish the bundle
    }

    enum Outcome {
        None,
        Cheated,
        Honest,
        Undecided,
        Withheld
    }

    struct Params {
        uint64 window; // seconds a commitment can be challenged
        uint64 voteWindow; // seconds for the votes after a challenge
        uint64 responseWindow; // seconds a node has to publish a bundle challenged as unavailable
        uint64 unbondDelay; // seconds between a validator's unstake and its withdrawal
        uint16 quorumBps; // share of the eligible weight that must vote for a decision at the vote's end
        uint16 sampleBps; // share of results each validator is asked to re-check
        uint16 slashBps; // share of the node's stake taken when it loses
        uint16 challengerRewardBps; // share of the node's slash paid to a winning challenger
        uint16 voterSlashBps; // share of its weight a voter escrows and loses on the losing side
        uint16 platformFeeBps;
        uint96 challengeBond;
        uint96 nodeMinStake;
        uint96 validatorMinStake;
    }

    struct Request {
        address consumer;
        Status status;
        Outcome outcome;
        uint32 version; // the parameters in force when the request was created
        uint64 deadline;
        uint64 windowEnd; // the challenge window's end; once challenged, the vote's (or the response's)
        uint64 commitBlock;
        address node;
        uint96 amount;
        bytes32 modelId;
        bytes32 inputCommitment;
        bytes32 outputHash;
        bytes32 bundleDigest;
        bytes32 seed; // the draw's seed, once stored
        address challenger;
        uint96 exposure; // the node's slash, fixed at the commitment
        uint128 eligible; // the weight that could vote, fixed at the challenge
        uint128 weightCheated;
        uint128 weightHonest;
        uint128 riskCheated; // escrowed by the voters of each side
        uint128 riskHonest;
        bool published; // its bundle is on chain: no second availability challenge
    }

    struct Vote {
        uint128 weight;
        uint96 risk;
        bool nodeCheated;
        bool claimed;
    }

    struct Unbonding {
        uint128 amount;
        uint64 readyAt;
    }

    IERC20 public immutable usdc;
    ModelRegistry public immutable registry;
    bytes32 public immutable systemDigest; // keccak256("proofmarket-attested-toploc-v1"): attested models only
    uint64 public immutable paramsDelay;
    Params[] private _versions;
    Params private _pendingParams;
    uint64 public pendingParamsEta;
    uint256 public requestCount;
    uint256 public platformBalance;
    mapping(uint256 => Request) private _requests;
    mapping(uint256 => mapping(address => Vote)) private _votes;
    mapping(address => uint256) public nodeStake;
    mapping(address => uint256) public validatorStake;
    mapping(address => Unbonding) public unbonding;
    mapping(address => uint256) public openVotes; // votes not yet claimed: the stake is locked
    mapping(address => uint256) public escrowed; // what its unclaimed votes put at risk (at most its stake)
    mapping(address => uint256) private _openCount; // a node's unresolved commitments
    mapping(address => Checkpoints.Trace208) private _stakeHistory;
    mapping(bytes32 => Checkpoints.Trace208) private _modelStake; // declared validators' stake, per model
    // each validator's part of each model's total (0 while undeclared): what a party to a request is subtracted, as it
    // stood before the commitment, whatever it declares after
    mapping(address => mapping(bytes32 => Checkpoints.Trace208)) private _declaredStake;
    mapping(address => bytes32[]) private _declared;
    mapping(address => mapping(bytes32 => uint256)) public declaredAt; // block of the declaration; 0: not declared

    event ParamsScheduled(Params params, uint64 eta);
    event ParamsApplied(uint32 version, Params params);
    event Staked(address indexed who, bool validator, uint256 amount);
    event Unstaked(address indexed who, bool validator, uint256 amount);
    event Withdrawn(address indexed who, uint256 amount);
    event Declared(address indexed validator, bytes32 indexed modelId, bool checks);
    event RequestCreated(uint256 indexed requestId, bytes32 indexed modelId, address indexed consumer,
        bytes32 inputCommitment, uint256 amount, uint64 deadline, address node);
    /// @dev `bundleDigest`: sha256 of the attested bundle's bytes (its CID's digest), where validators fetch it.
    event Committed(uint256 indexed requestId, address indexed node, uint256[5] instances, bytes32 bundleDigest,
        uint64 windowEnd);
    event BatchCommitted(address indexed node, bytes32 root, uint256 count);
    event Challenged(uint256 indexed requestId, address indexed challenger, uint64 voteEnd);
    event AvailabilityChallenged(uint256 indexed requestId, address indexed challenger, uint64 respondBy);
    event Published(uint256 indexed requestId, bytes bundle, uint64 windowEnd);
    event Voted(uint256 indexed requestId, address indexed validator, bool nodeCheated, uint256 weight);
    event Resolved(uint256 indexed requestId, bool nodeCheated, uint256 slashed, uint256 challengerPaid);
    event VoteClaimed(uint256 indexed requestId, address indexed validator, uint256 stake);
    event Paid(uint256 indexed requestId, address indexed node, uint256 ownerAmount, uint256 nodeAmount, uint256 fee);
    event Refunded(uint256 indexed requestId, uint256 amount);

    error BadParams();
    error ParamsDelayTooLong(uint64 delay);
    error NoPendingParams();
    error ParamsNotDue(uint64 eta);
    error NotAttestedModel(bytes32 modelId);
    error ModelInactive(bytes32 modelId);
    error DeadlinePassed(uint64 deadline);
    error NodeRequired();
    error UnknownRequest(uint256 requestId);
    error WrongStatus(uint256 requestId, Status status);
    error StakeTooLow(address who, uint256 stake, uint256 minimum);
    error NoVotingWeight(uint256 requestId, address who);
    error BadSignature();
    error NotTheRequest(bytes32 expected, bytes32 actual);
    error NotTheWeights(bytes32 expected, bytes32 actual);
    error NotTheNode(uint256 requestId, address node);
    error NotTheBundle(bytes32 expected, bytes32 actual);
    error BundleTooLarge(uint256 size, uint256 maximum);
    error BadBatch();
    error WindowClosed(uint256 requestId, uint64 windowEnd);
    error WindowOpen(uint256 requestId, uint64 windowEnd);
    error PartyCannotVote(address who);
    error AlreadyVoted(uint256 requestId, address who);
    error NoVote(uint256 requestId, address who);
    error NotResolved(uint256 requestId);
    error NothingStaked(address who);
    error StakeLocked(address who);
    error UnbondingNotDone(uint64 readyAt);
    error TooManyModels(uint256 maximum);
    error AlreadyDeclared(bytes32 modelId, bool checks);

    constructor(IERC20 usdc_, ModelRegistry registry_, address admin, Params memory params_, uint64 paramsDelay_)
        Ownable(admin)
    {
        if (paramsDelay_ > MAX_PARAMS_DELAY) revert ParamsDelayTooLong(paramsDelay_);
        (usdc, registry, paramsDelay) = (usdc_, registry_, paramsDelay_);
        systemDigest = keccak256("proofmarket-attested-toploc-v1");
        _checkParams(params_);
        _versions.push(params_);
        emit ParamsApplied(0, params_);
    }

    // --- admin ----------------------------------------------------------------------------------
    /// @notice Propose new parameters: they apply after `paramsDelay` (applyParams), to requests created after.
    /// A new proposal replaces the pending one and restarts the delay (propose the current ones to cancel).
    function scheduleParams(Params calldata p) external onlyOwner {
        _checkParams(p);
        _pendingParams = p;
        pendingParamsEta = uint64(block.timestamp) + paramsDelay;
        emit ParamsScheduled(p, pendingParamsEta);
    }

    /// @notice Apply the scheduled parameters once their delay passed (anyone may call it).
    function applyParams() external {
        uint64 eta = pendingParamsEta;
        if (eta == 0) revert NoPendingParams();
        if (block.timestamp < eta) revert ParamsNotDue(eta);
        _versions.push(_pendingParams);
        delete _pendingParams;
        pendingParamsEta = 0;
        emit ParamsApplied(uint32(_versions.length - 1), _versions[_versions.length - 1]);
    }

    /// @notice The parameters new requests get.
    function params() public view returns (Params memory) {
        return _versions[_versions.length - 1];
    }

    /// @notice The parameters a request lives by (those in force when it was created).
    function requestParams(uint256 requestId) external view returns (Params memory) {
        return _versions[_requests[requestId].version];
    }

    function withdrawPlatform(address to, uint256 amount) external onlyOwner nonReentrant {
        platformBalance -= amount;
        usdc.safeTransfer(to, amount);
    }

    // --- stakes ---------------------------------------------------------------------------------
    function stake(uint256 amount, bool asValidator) external nonReentrant {
        usdc.safeTransferFrom(msg.sender, address(this), amount);
        if (asValidator) _setStake(msg.sender, validatorStake[msg.sender] + amount);
        else nodeStake[msg.sender] += amount;
        emit Staked(msg.sender, asValidator, amount);
    }

    /// @notice A node takes stake back when nothing it committed is unresolved (paid at once). A validator's
    /// stake leaves its weight at once and is withdrawn after `unbondDelay` (`withdraw`); refused while a vote
    /// of it is unclaimed.
    function unstake(uint256 amount, bool asValidator) external nonReentrant {
        if (!asValidator) {
            if (nodeStake[msg.sender] < amount) revert NothingStaked(msg.sender);
            if (_openCount[msg.sender] > 0) revert StakeLocked(msg.sender);
            nodeStake[msg.sender] -= amount;
            emit Unstaked(msg.sender, false, amount);
            usdc.safeTransfer(msg.sender, amount);
            return;
        }
        if (validatorStake[msg.sender] < amount) revert NothingStaked(msg.sender);
        if (openVotes[msg.sender] > 0) revert StakeLocked(msg.sender);
        _setStake(msg.sender, validatorStake[msg.sender] - amount);
        Unbonding storage u = unbonding[msg.sender];
        u.amount += uint128(amount);
        u.readyAt = uint64(block.timestamp) + params().unbondDelay;
        emit Unstaked(msg.sender, true, amount);
    }

    function withdraw() external nonReentrant {
        Unbonding memory u = unbonding[msg.sender];
        if (u.amount == 0) revert NothingStaked(msg.sender);
        if (block.timestamp < u.readyAt) revert UnbondingNotDone(u.readyAt);
        delete unbonding[msg.sender];
        emit Withdrawn(msg.sender, u.amount);
        usdc.safeTransfer(msg.sender, u.amount);
    }

    /// @notice Declare that the caller can (`checks`) or no longer can re-check `modelId`'s results: its stake counts
    /// for the model's requests committed from the next block on (at most MAX_DECLARED models at once).
    function declare(bytes32 modelId, bool checks) external {
        if ((declaredAt[msg.sender][modelId] != 0) == checks) revert AlreadyDeclared(modelId, checks);
        bytes32[] storage list = _declared[msg.sender];
        uint256 s = validatorStake[msg.sender];
        uint256 total = _modelStake[modelId].latest();
        if (checks) {
            if (list.length >= MAX_DECLARED) revert TooManyModels(MAX_DECLARED);
            list.push(modelId);
            declaredAt[msg.sender][modelId] = block.number;
            _modelStake[modelId].set(total + s);
            _declaredStake[msg.sender][modelId].set(s);
        } else {
            uint256 i;
            while (list[i] != modelId) ++i;
            list[i] = list[list.length - 1];
            list.pop();
            delete declaredAt[msg.sender][modelId];
            _modelStake[modelId].set(total - s);
            _declaredStake[msg.sender][modelId].set(0);
        }
        emit Declared(msg.sender, modelId, checks);
    }

    function declaredModels(address validator) external view returns (bytes32[] memory) {
        return _declared[validator];
    }

    /// @notice A validator's bonded stake at the end of block `blockNumber`.
    function stakeAt(address who, uint256 blockNumber) public view returns (uint256) {
        return _stakeHistory[who].at(blockNumber);
    }

    /// @notice What `who`'s vote on `requestId` weighs: its stake before the commitment, capped by its stake
    /// now; 0 for the parties and below the validator minimum.
    function weightOf(uint256 requestId, address who) public view returns (uint256) {
        Request storage r = _requests[requestId];
        if (r.commitBlock == 0 || who == r.node || who == r.consumer) return 0;
        uint256 w = _counted(who, r.modelId, r.commitBlock - 1);
        if (w < _versions[r.version].validatorMinStake) return 0;
        uint256 bonded = validatorStake[who];
        return bonded < w ? bonded : w;
    }

    // --- consumers ------------------------------------------------------------------------------
    /// @notice Escrow the model's price for a result on `inputCommitment`, answered by `node` (required: a request
    /// open to any node could be answered by whoever copies the pending commitment first).
    function request(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, address node)
        external
        nonReentrant
        returns (uint256 requestId)
    {
        uint96 price = _attestedPrice(modelId);
        if (deadline <= block.timestamp) revert DeadlinePassed(deadline);
        if (node == address(0)) revert NodeRequired();
        requestId = ++requestCount;
        Request storage r = _requests[requestId];
        r.consumer = msg.sender;
        r.status = Status.Open;
        r.version = uint32(_versions.length - 1);
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
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(keccak256(abi.encodePacked(instances)));
        _requireSigner(digest, signature);
        _commit(requestId, instances, bundleDigest);
    }

    /// @notice Commit several results in one transaction: the node signs the Merkle root of the leaves
    /// keccak256(abi.encode(requestId, instances, bundleDigest)) (pairs hashed in sorted order, an odd last
    /// node carried up). Each request is then as if committed alone (its own window, challenge and vote).
    function commitBatch(uint256[] calldata requestIds, uint256[5][] calldata instances,
        bytes32[] calldata bundleDigests, bytes calldata signature) external nonReentrant returns (bytes32 root)
    {
        uint256 n = requestIds.length;
        if (n == 0 || n > 256 || instances.length != n || bundleDigests.length != n) revert BadBatch();
        bytes32[] memory level = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            level[i] = keccak256(abi.encode(requestIds[i], instances[i], bundleDigests[i]));
        }
        root = _merkleRoot(level);
        _requireSigner(MessageHashUtils.toEthSignedMessageHash(root), signature);
        for (uint256 i; i < n; ++i) {
            _commit(requestIds[i], instances[i], bundleDigests[i]);
        }
        emit BatchCommitted(msg.sender, root, n);
    }

    /// @notice Unchallenged after the window: pay the owner share, the platform fee and the node.
    function finalize(uint256 requestId) external nonReentrant {
        Request storage r = _get(requestId, Status.Committed);
        if (block.timestamp <= r.windowEnd) revert WindowOpen(requestId, r.windowEnd);
        _storeSeed(r);
        _openCount[r.node] -= 1;
        _pay(requestId, r);
    }

    /// @notice Publish a bundle challenged as unavailable (the node, or anyone holding it): its sha256 must be the
    /// committed digest. The challenger takes its bond back and a fresh challenge window opens.
    function publish(uint256 requestId, bytes calldata bundle) external nonReentrant {
        Request storage r = _get(requestId, Status.Withheld);
        if (block.timestamp > r.windowEnd) revert WindowClosed(requestId, r.windowEnd);
        if (bundle.length > MAX_PUBLISHED_BYTES) revert BundleTooLarge(bundle.length, MAX_PUBLISHED_BYTES);
        bytes32 actual = sha256(bundle);
        if (actual != r.bundleDigest) revert NotTheBundle(r.bundleDigest, actual);
        Params memory p = _versions[r.version];
        address challenger = r.challenger;
        r.status = Status.Committed;
        r.challenger = address(0);
        r.published = true;
        r.windowEnd = uint64(block.timestamp) + p.window;
        emit Published(requestId, bundle, r.windowEnd);
        usdc.safeTransfer(challenger, p.challengeBond);
    }

    // --- validators -----------------------------------------------------------------------------
    /// @notice Whether `validator` is asked to re-check `requestId` (known one block after the commitment; a
    /// seed the chain no longer remembers and nobody stored counts as drawn).
    function isSampled(uint256 requestId, address validator) public view returns (bool) {
        Request storage r = _requests[requestId];
        if (r.commitBlock == 0 || block.number <= r.commitBlock + 1) return false;
        bytes32 seed = r.seed != bytes32(0) ? r.seed : blockhash(r.commitBlock + 1);
        if (seed == bytes32(0)) return true;
        return uint256(keccak256(abi.encode(seed, requestId, validator))) % BPS < _versions[r.version].sampleBps;
    }

    /// @notice Whether a node should serve `requestId`'s committed bundle to `who`: a validator with weight on
    /// it, drawn for it, or any such validator once it is challenged.
    function canRead(uint256 requestId, address who) external view returns (bool) {
        Status s = _requests[requestId].status;
        if (s != Status.Committed && s != Status.Challenged && s != Status.Withheld) return false;
        if (weightOf(requestId, who) == 0) return false;
        return s == Status.Challenged || isSampled(requestId, who);
    }

    /// @notice Store a committed request's draw seed (anyone: the node, a validator, a keeper) once the block after
    /// its commitment is mined, so that who was drawn stays known after the chain forgets that block's hash.
    function storeSeed(uint256 requestId) external {
        _storeSeed(_requests[requestId]);
    }

    /// @notice Challenge a result as wrong (the challenge is the challenger's vote "cheated").
    function challenge(uint256 requestId) external nonReentrant {
        Request storage r = _openChallenge(requestId);
        Params memory p = _versions[r.version];
        r.status = Status.Challenged;
        r.windowEnd = uint64(block.timestamp) + p.voteWindow; // now the vote's deadline
        uint256 b = r.commitBlock - 1;
        r.eligible = uint128(_modelStake[r.modelId].at(b) - _counted(r.node, r.modelId, b)
            - (r.consumer == r.node ? 0 : _counted(r.consumer, r.modelId, b)));
        emit Challenged(requestId, msg.sender, r.windowEnd);
        usdc.safeTransferFrom(msg.sender, address(this), p.challengeBond);
        _castVote(requestId, r, true, p);
    }

    /// @notice Challenge a result as withheld: the committed bundle could not be had (only a validator drawn for it,
    /// and once: a published bundle is public). The node must publish it within the response window or lose as if
    /// it had cheated.
    function challengeAvailability(uint256 requestId) external nonReentrant {
        Request storage r = _openChallenge(requestId);
        if (r.published || !isSampled(requestId, msg.sender)) revert NoVotingWeight(requestId, msg.sender);
        Params memory p = _versions[r.version];
        r.status = Status.Withheld;
        r.windowEnd = uint64(block.timestamp) + p.responseWindow;
        emit AvailabilityChallenged(requestId, msg.sender, r.windowEnd);
        usdc.safeTransferFrom(msg.sender, address(this), p.challengeBond);
    }

    function vote(uint256 requestId, bool nodeCheated) external nonReentrant {
        Request storage r = _get(requestId, Status.Challenged);
        if (block.timestamp > r.windowEnd) revert WindowClosed(requestId, r.windowEnd);
        if (_votes[requestId][msg.sender].weight > 0) revert AlreadyVoted(requestId, msg.sender);
        _castVote(requestId, r, nodeCheated, _versions[r.version]);
    }

    /// @notice After the vote's (or the response's) end: decide a challenge no side won outright. A vote with
    /// too little weight slashes nobody; an unpublished withheld bundle loses.
    function resolve(uint256 requestId) external nonReentrant {
        Request storage r = _requests[requestId];
        if (r.status != Status.Challenged && r.status != Status.Withheld) revert WrongStatus(requestId, r.status);
        if (block.timestamp <= r.windowEnd) revert WindowOpen(requestId, r.windowEnd);
        Params memory p = _versions[r.version];
        if (r.status == Status.Withheld) return _resolve(requestId, r, Outcome.Withheld, p);
        uint256 voted = uint256(r.weightCheated) + r.weightHonest;
        if (voted * BPS < uint256(r.eligible) * p.quorumBps) return _resolve(requestId, r, Outcome.Undecided, p);
        _resolve(requestId, r, r.weightCheated > r.weightHonest ? Outcome.Cheated : Outcome.Honest, p);
    }

    /// @notice Settle `validator`'s vote on a resolved request (anyone may call it): a winner gains its part of
    /// the losers' shares; a loser loses its share; nothing moves when undecided; the stake unlocks.
    function claim(uint256 requestId, address validator) external nonReentrant {
        Request storage r = _requests[requestId];
        Vote storage v = _votes[requestId][validator];
        if (v.weight == 0 || v.claimed) revert NoVote(requestId, validator);
        if (r.outcome == Outcome.None) revert NotResolved(requestId);
        v.claimed = true;
        openVotes[validator] -= 1;
        escrowed[validator] -= v.risk;
        uint256 stake_ = validatorStake[validator];
        if (r.outcome == Outcome.Undecided) {
            // nobody loses
        } else if (v.nodeCheated == (r.outcome == Outcome.Cheated)) {
            (uint256 pool, uint256 side) = v.nodeCheated ? (r.riskHonest, r.weightCheated) : (r.riskCheated,
                r.weightHonest);
            stake_ += (pool * v.weight) / side;
        } else {
            stake_ -= v.risk;
        }
        if (stake_ != validatorStake[validator]) _setStake(validator, stake_);
        emit VoteClaimed(requestId, validator, stake_);
    }

    function getRequest(uint256 requestId) external view returns (Request memory) {
        return _requests[requestId];
    }

    function voteOf(uint256 requestId, address validator) external view returns (Vote memory) {
        return _votes[requestId][validator];
    }

    // --- internals ------------------------------------------------------------------------------
    function _commit(uint256 requestId, uint256[5] calldata instances, bytes32 bundleDigest) private {
        Request storage r = _get(requestId, Status.Open);
        if (block.timestamp > r.deadline) revert DeadlinePassed(r.deadline);
        if (r.node != msg.sender) revert NotTheNode(requestId, r.node);
        Params memory p = _versions[r.version];
        if (nodeStake[msg.sender] < p.nodeMinStake) revert StakeTooLow(msg.sender, nodeStake[msg.sender], p.nodeMinStake);
        bytes32 actual = keccak256(abi.encodePacked(instances[0]));
        if (actual != r.inputCommitment) revert NotTheRequest(r.inputCommitment, actual);
        bytes32 weights = registry.getModel(r.modelId).spec.onnxSha256;
        if (bytes32(instances[1]) != weights) revert NotTheWeights(weights, bytes32(instances[1]));
        r.status = Status.Committed;
        (r.commitBlock, r.windowEnd) = (uint64(block.number), uint64(block.timestamp) + p.window);
        r.outputHash = bytes32(instances[4]);
        r.bundleDigest = bundleDigest;
        r.exposure = uint96((nodeStake[msg.sender] * p.slashBps) / BPS);
        _openCount[msg.sender] += 1;
        emit Committed(requestId, msg.sender, instances, bundleDigest, r.windowEnd);
    }

    function _openChallenge(uint256 requestId) private returns (Request storage r) {
        r = _get(requestId, Status.Committed);
        if (block.timestamp > r.windowEnd) revert WindowClosed(requestId, r.windowEnd);
        if (msg.sender == r.node || msg.sender == r.consumer) revert PartyCannotVote(msg.sender);
        if (weightOf(requestId, msg.sender) == 0) revert NoVotingWeight(requestId, msg.sender);
        _storeSeed(r);
        r.challenger = msg.sender;
    }

    function _castVote(uint256 requestId, Request storage r, bool nodeCheated, Params memory p) private {
        if (msg.sender == r.node || msg.sender == r.consumer) revert PartyCannotVote(msg.sender);
        _storeSeed(r);
        uint256 weight = weightOf(requestId, msg.sender);
        if (weight == 0) revert NoVotingWeight(requestId, msg.sender);
        uint256 risk = (weight * p.voterSlashBps) / BPS;
        uint256 free = validatorStake[msg.sender] - escrowed[msg.sender];
        if (risk > free) (risk, weight) = (free, (free * BPS) / p.voterSlashBps); // what its free stake can back
        if (weight == 0) revert NoVotingWeight(requestId, msg.sender);
        escrowed[msg.sender] += risk;
        openVotes[msg.sender] += 1;
        _votes[requestId][msg.sender] = Vote(uint128(weight), uint96(risk), nodeCheated, false);
        if (nodeCheated) (r.weightCheated, r.riskCheated) = (r.weightCheated + uint128(weight), r.riskCheated
            + uint128(risk));
        else (r.weightHonest, r.riskHonest) = (r.weightHonest + uint128(weight), r.riskHonest + uint128(risk));
        emit Voted(requestId, msg.sender, nodeCheated, weight);
        if (2 * uint256(r.weightCheated) > r.eligible) _resolve(requestId, r, Outcome.Cheated, p);
        else if (2 * uint256(r.weightHonest) > r.eligible) _resolve(requestId, r, Outcome.Honest, p);
    }

    function _resolve(uint256 requestId, Request storage r, Outcome outcome, Params memory p) private {
        r.outcome = outcome;
        _openCount[r.node] -= 1;
        if (outcome == Outcome.Cheated || outcome == Outcome.Withheld) {
            uint256 slashed = r.exposure < nodeStake[r.node] ? r.exposure : nodeStake[r.node];
            nodeStake[r.node] -= slashed;
            uint256 reward = (slashed * p.challengerRewardBps) / BPS;
            platformBalance += slashed - reward;
            r.status = Status.Slashed;
            emit Resolved(requestId, true, slashed, reward + p.challengeBond);
            emit Refunded(requestId, r.amount);
            usdc.safeTransfer(r.consumer, r.amount);
            usdc.safeTransfer(r.challenger, reward + p.challengeBond);
        } else if (outcome == Outcome.Honest) {
            emit Resolved(requestId, false, 0, 0);
            nodeStake[r.node] += p.challengeBond; // the griefer's bond backs the node it accused
            _pay(requestId, r);
        } else { // undecided: nobody is slashed, the challenger takes its bond back and the consumer its money
            r.status = Status.Refunded;
            emit Resolved(requestId, false, 0, p.challengeBond);
            emit Refunded(requestId, r.amount);
            usdc.safeTransfer(r.challenger, p.challengeBond);
            usdc.safeTransfer(r.consumer, r.amount);
        }
    }

    function _setStake(address who, uint256 amount) private {
        uint256 before = validatorStake[who];
        validatorStake[who] = amount;
        _stakeHistory[who].set(amount);
        bytes32[] storage list = _declared[who];
        for (uint256 i; i < list.length; ++i) {
            Checkpoints.Trace208 storage t = _modelStake[list[i]];
            t.set(t.latest() + amount - before);
            _declaredStake[who][list[i]].set(amount);
        }
    }

    /// @dev `who`'s part of the model's total at the end of block `b`, whatever it declared since.
    function _counted(address who, bytes32 modelId, uint256 b) private view returns (uint256) {
        return _declaredStake[who][modelId].at(b);
    }

    function _storeSeed(Request storage r) private {
        if (r.seed == bytes32(0) && r.commitBlock != 0 && block.number > r.commitBlock + 1) {
            r.seed = blockhash(r.commitBlock + 1);
        }
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

    function _pay(uint256 requestId, Request storage r) private {
        ModelRegistry.Terms memory t = registry.terms(r.modelId);
        uint256 fee = (uint256(r.amount) * _versions[r.version].platformFeeBps) / BPS;
        uint256 ownerAmount = (uint256(r.amount) * t.ownerShareBps) / BPS;
        uint256 nodeAmount = r.amount - fee - ownerAmount;
        r.status = Status.Paid;
        if (r.outcome == Outcome.None) r.outcome = Outcome.Honest;
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

    function _checkParams(Params memory p) private pure {
        bool ok = p.window >= 60 && p.window <= 30 days && p.voteWindow >= 60 && p.voteWindow <= 30 days
            && p.responseWindow >= 60 && p.responseWindow <= 30 days && p.unbondDelay <= 60 days
            && p.quorumBps >= 2_000 && p.quorumBps <= BPS && p.sampleBps <= BPS && p.slashBps <= BPS
            && p.challengerRewardBps <= BPS && p.voterSlashBps >= 100 && p.voterSlashBps <= 5_000
            && p.platformFeeBps <= 1_000 && p.challengeBond > 0
            && p.validatorMinStake > 0 && p.nodeMinStake > 0;
        if (!ok) revert BadParams();
    }
}
