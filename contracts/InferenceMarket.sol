// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC3009} from "@openzeppelin/contracts/interfaces/draft-IERC3009.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ModelRegistry} from "./ModelRegistry.sol";

/// @notice The EZKL Halo2Verifier interface. A verifier may revert on a bad proof instead of
/// returning false; both count as an invalid proof.
interface IProofVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}

/// @title InferenceMarket: USDC escrow for proven ML inference.
/// @notice Flow: a consumer escrows the model's price for (modelId, inputCommitment, deadline);
/// an authorised prover holding at least `minStake` optionally accepts the request, then fulfils it
/// with a proof. The input commitment is keccak256(abi.encodePacked(instances[0:inputInstances])),
/// the keccak of the leading public instances (32-byte big-endian words) that make up the input.
/// - A proof whose input or params instances do not match the request/model is refused (revert):
///   it is not an attempt to fulfil this request, and the request stays open.
/// - Valid proof: the output hash (keccak of the output instances) is recorded, the owner, the prover
///   and the platform are paid at once, the prover's `fulfilled` counter goes up.
/// - Invalid proof (false or revert): the consumer gets the full amount back, the prover's stake
///   (active + pending unstake) is slashed by `slashBps` into the platform's balance, `failed` goes up.
///   Slashed funds go to the platform, not the consumer, so that a model owner colluding with a
///   consumer cannot profit from a verifier that rejects honest proofs.
/// - After the deadline the consumer may take the amount back; an assigned prover's `expired` goes up.
/// Pausing stops new requests only: acceptance, fulfilment, refunds and staking go on.
contract InferenceMarket is Ownable, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint16 public constant BPS = 10_000;
    uint16 public constant MAX_PLATFORM_FEE_BPS = 1_000;
    uint64 public constant MAX_UNSTAKE_DELAY = 30 days;
    uint64 public constant MAX_REQUEST_TTL = 30 days;

    enum Status {
        None,
        Open,
        Accepted,
        Fulfilled,
        Rejected,
        Refunded
    }

    struct Request {
        address consumer;
        uint64 deadline;
        uint16 feeBps;
        Status status;
        address prover;
        uint96 amount;
        bytes32 modelId;
        bytes32 inputCommitment;
        bytes32 outputHash;
    }

    struct Prover {
        uint256 stake;
        uint256 pendingUnstake;
        uint64 unlockAt;
        bool authorized;
        uint32 fulfilled;
        uint32 failed;
        uint32 expired;
    }

    /// @notice An EIP-3009 ReceiveWithAuthorization signed by the consumer for exactly the model's
    /// price, to this contract, with nonce = authorizationNonce(modelId, inputCommitment, deadline, salt).
    struct Authorization {
        uint256 validAfter;
        uint256 validBefore;
        bytes32 salt;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    IERC20 public immutable usdc;
    ModelRegistry public immutable registry;

    uint16 public platformFeeBps;
    uint16 public slashBps;
    uint64 public unstakeDelay;
    uint256 public minStake;
    uint256 public platformBalance;
    uint256 public requestCount;

    mapping(uint256 requestId => Request) private _requests;
    mapping(address prover => Prover) private _provers;

    event RequestCreated(
        uint256 indexed requestId,
        bytes32 indexed modelId,
        address indexed consumer,
        bytes32 inputCommitment,
        uint96 amount,
        uint64 deadline
    );
    event RequestAccepted(uint256 indexed requestId, address indexed prover);
    event RequestFulfilled(
        uint256 indexed requestId,
        address indexed prover,
        bytes32 outputHash,
        uint256[] outputs,
        uint256 ownerAmount,
        uint256 proverAmount,
        uint256 platformFee
    );
    event ProofRejected(uint256 indexed requestId, address indexed prover, uint256 refunded, uint256 slashed);
    event RequestRefunded(uint256 indexed requestId, address indexed consumer, uint256 amount, address prover);
    event Staked(address indexed prover, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed prover, uint256 amount, uint64 unlockAt);
    event Unstaked(address indexed prover, uint256 amount);
    event ProverAuthorizationChanged(address indexed prover, bool authorized);
    event PlatformFeeChanged(uint16 oldBps, uint16 newBps);
    event SlashBpsChanged(uint16 oldBps, uint16 newBps);
    event MinStakeChanged(uint256 oldAmount, uint256 newAmount);
    event UnstakeDelayChanged(uint64 oldDelay, uint64 newDelay);
    event PlatformWithdrawal(address indexed to, uint256 amount);

    error ModelInactive(bytes32 modelId);
    error InvalidDeadline(uint64 deadline, uint256 nowTs);
    error UnknownRequest(uint256 requestId);
    error RequestNotPending(uint256 requestId, Status status);
    error RequestNotOpen(uint256 requestId, Status status);
    error RequestExpired(uint256 requestId, uint64 deadline);
    error DeadlineNotReached(uint256 requestId, uint64 deadline);
    error NotConsumer(uint256 requestId, address caller);
    error NotAssignedProver(uint256 requestId, address assigned);
    error ProverNotAuthorized(address prover);
    error InsufficientStake(address prover, uint256 stake, uint256 minStake);
    error TooFewInstances(uint256 given, uint256 needed);
    error InputCommitmentMismatch(bytes32 expected, bytes32 actual);
    error ParamsCommitmentMismatch(uint256 expected, uint256 actual);
    error VerifierOutOfGas();
    error FeeTooHigh(uint16 bps, uint16 maxBps);
    error SlashTooHigh(uint16 bps);
    error UnstakeDelayTooLong(uint64 delay);
    error ZeroAmount();
    error InsufficientBalance(uint256 available, uint256 requested);
    error UnstakeLocked(uint64 unlockAt);

    constructor(
        IERC20 usdc_,
        ModelRegistry registry_,
        address admin,
        uint16 platformFeeBps_,
        uint16 slashBps_,
        uint256 minStake_,
        uint64 unstakeDelay_
    ) Ownable(admin) {
        usdc = usdc_;
        registry = registry_;
        setPlatformFee(platformFeeBps_);
        setSlashBps(slashBps_);
        setMinStake(minStake_);
        setUnstakeDelay(unstakeDelay_);
    }

    // --- consumers ------------------------------------------------------------------------------

    /// @notice Escrow the model's price (pulled with transferFrom: approve first).
    function requestInference(bytes32 modelId, bytes32 inputCommitment, uint64 deadline)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 requestId)
    {
        uint96 price = _priceForNewRequest(modelId, deadline);
        requestId = _createRequest(msg.sender, modelId, inputCommitment, deadline, price);
        usdc.safeTransferFrom(msg.sender, address(this), price);
    }

    /// @notice Escrow the model's price with the consumer's EIP-3009 ReceiveWithAuthorization signature;
    /// anyone (a relayer) may submit it. The nonce binds the signature to this request's parameters.
    function requestInferenceWithAuthorization(
        address consumer,
        bytes32 modelId,
        bytes32 inputCommitment,
        uint64 deadline,
        Authorization calldata auth
    ) external whenNotPaused nonReentrant returns (uint256 requestId) {
        uint96 price = _priceForNewRequest(modelId, deadline);
        requestId = _createRequest(consumer, modelId, inputCommitment, deadline, price);
        bytes32 nonce = authorizationNonce(modelId, inputCommitment, deadline, auth.salt);
        IERC3009(address(usdc)).receiveWithAuthorization(
            consumer, address(this), price, auth.validAfter, auth.validBefore, nonce, auth.v, auth.r, auth.s
        );
    }

    /// @notice Take the escrowed amount back once the deadline has passed without a settlement.
    function refund(uint256 requestId) external nonReentrant {
        Request storage r = _pending(requestId);
        if (msg.sender != r.consumer) revert NotConsumer(requestId, msg.sender);
        if (block.timestamp <= r.deadline) revert DeadlineNotReached(requestId, r.deadline);
        r.status = Status.Refunded;
        if (r.prover != address(0)) _provers[r.prover].expired += 1;
        emit RequestRefunded(requestId, r.consumer, r.amount, r.prover);
        usdc.safeTransfer(r.consumer, r.amount);
    }

    // --- provers --------------------------------------------------------------------------------

    /// @notice Claim an open request: from now on only the caller may fulfil it, and an expiry counts
    /// against the caller's reputation.
    function acceptRequest(uint256 requestId) external nonReentrant {
        Request storage r = _pending(requestId);
        if (r.status != Status.Open) revert RequestNotOpen(requestId, r.status);
        if (block.timestamp > r.deadline) revert RequestExpired(requestId, r.deadline);
        _requireEligible(msg.sender);
        r.status = Status.Accepted;
        r.prover = msg.sender;
        emit RequestAccepted(requestId, msg.sender);
    }

    /// @notice Settle a request with a proof. See the contract notice for the outcomes.
    function fulfill(uint256 requestId, bytes calldata proof, uint256[] calldata instances) external nonReentrant {
        Request storage r = _pending(requestId);
        if (r.status == Status.Accepted && r.prover != msg.sender) revert NotAssignedProver(requestId, r.prover);
        if (block.timestamp > r.deadline) revert RequestExpired(requestId, r.deadline);
        _requireEligible(msg.sender);
        ModelRegistry.Terms memory t = registry.terms(r.modelId);
        uint256 outputStart = _checkBinding(r.inputCommitment, t, instances);
        r.prover = msg.sender;
        if (_verify(t.verifier, proof, instances)) {
            _settleValid(requestId, r, t, instances[outputStart:]);
        } else {
            _settleInvalid(requestId, r);
        }
    }

    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Prover storage p = _provers[msg.sender];
        p.stake += amount;
        emit Staked(msg.sender, amount, p.stake);
        usdc.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Move stake to the unstaking queue; it stays slashable until withdrawn with unstake().
    /// Each call restarts the delay for the whole queued amount.
    function requestUnstake(uint256 amount) external nonReentrant {
        Prover storage p = _provers[msg.sender];
        if (amount == 0) revert ZeroAmount();
        if (amount > p.stake) revert InsufficientBalance(p.stake, amount);
        p.stake -= amount;
        p.pendingUnstake += amount;
        p.unlockAt = uint64(block.timestamp) + unstakeDelay;
        emit UnstakeRequested(msg.sender, amount, p.unlockAt);
    }

    function unstake() external nonReentrant {
        Prover storage p = _provers[msg.sender];
        uint256 amount = p.pendingUnstake;
        if (amount == 0) revert ZeroAmount();
        if (block.timestamp < p.unlockAt) revert UnstakeLocked(p.unlockAt);
        p.pendingUnstake = 0;
        emit Unstaked(msg.sender, amount);
        usdc.safeTransfer(msg.sender, amount);
    }

    // --- admin ----------------------------------------------------------------------------------

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }

    function setProverAuthorized(address prover, bool authorized) external onlyOwner {
        _provers[prover].authorized = authorized;
        emit ProverAuthorizationChanged(prover, authorized);
    }

    function setPlatformFee(uint16 bps) public onlyOwner {
        if (bps > MAX_PLATFORM_FEE_BPS) revert FeeTooHigh(bps, MAX_PLATFORM_FEE_BPS);
        emit PlatformFeeChanged(platformFeeBps, bps);
        platformFeeBps = bps;
    }

    function setSlashBps(uint16 bps) public onlyOwner {
        if (bps > BPS) revert SlashTooHigh(bps);
        emit SlashBpsChanged(slashBps, bps);
        slashBps = bps;
    }

    function setMinStake(uint256 amount) public onlyOwner {
        emit MinStakeChanged(minStake, amount);
        minStake = amount;
    }

    function setUnstakeDelay(uint64 delay) public onlyOwner {
        if (delay > MAX_UNSTAKE_DELAY) revert UnstakeDelayTooLong(delay);
        emit UnstakeDelayChanged(unstakeDelay, delay);
        unstakeDelay = delay;
    }

    /// @notice Withdraw platform fees and slashed stake.
    function withdrawPlatform(address to, uint256 amount) external onlyOwner nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (amount > platformBalance) revert InsufficientBalance(platformBalance, amount);
        platformBalance -= amount;
        emit PlatformWithdrawal(to, amount);
        usdc.safeTransfer(to, amount);
    }

    // --- views ----------------------------------------------------------------------------------

    function getRequest(uint256 requestId) external view returns (Request memory) {
        return _requests[requestId];
    }

    function getProver(address prover) external view returns (Prover memory) {
        return _provers[prover];
    }

    function isEligible(address prover) public view returns (bool) {
        Prover storage p = _provers[prover];
        return p.authorized && p.stake >= minStake;
    }

    function authorizationNonce(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(modelId, inputCommitment, deadline, salt));
    }

    /// @notice keccak256 of the packed 32-byte instances, the rule for input and output hashes.
    function instancesHash(uint256[] calldata instances) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(instances));
    }

    // --- internals ------------------------------------------------------------------------------

    function _priceForNewRequest(bytes32 modelId, uint64 deadline) private view returns (uint96) {
        ModelRegistry.Terms memory t = registry.terms(modelId);
        if (!t.active) revert ModelInactive(modelId);
        if (deadline <= block.timestamp || deadline > block.timestamp + MAX_REQUEST_TTL) {
            revert InvalidDeadline(deadline, block.timestamp);
        }
        return t.price;
    }

    function _createRequest(address consumer, bytes32 modelId, bytes32 inputCommitment, uint64 deadline, uint96 price)
        private
        returns (uint256 requestId)
    {
        requestId = ++requestCount;
        Request storage r = _requests[requestId];
        (r.consumer, r.deadline, r.feeBps, r.status) = (consumer, deadline, platformFeeBps, Status.Open);
        (r.amount, r.modelId, r.inputCommitment) = (price, modelId, inputCommitment);
        emit RequestCreated(requestId, modelId, consumer, inputCommitment, price, deadline);
    }

    function _pending(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status == Status.None) revert UnknownRequest(requestId);
        if (r.status != Status.Open && r.status != Status.Accepted) revert RequestNotPending(requestId, r.status);
    }

    function _requireEligible(address prover) private view {
        Prover storage p = _provers[prover];
        if (!p.authorized) revert ProverNotAuthorized(prover);
        if (p.stake < minStake) revert InsufficientStake(prover, p.stake, minStake);
    }

    /// @dev Instances are [input..., params commitment (hashed params only), output...].
    function _checkBinding(bytes32 inputCommitment, ModelRegistry.Terms memory t, uint256[] calldata instances)
        private
        pure
        returns (uint256 outputStart)
    {
        outputStart = uint256(t.inputInstances) + (t.paramsCommitment != 0 ? 1 : 0);
        if (instances.length <= outputStart) revert TooFewInstances(instances.length, outputStart + 1);
        bytes32 actual = keccak256(abi.encodePacked(instances[:t.inputInstances]));
        if (actual != inputCommitment) revert InputCommitmentMismatch(inputCommitment, actual);
        if (t.paramsCommitment != 0 && instances[t.inputInstances] != t.paramsCommitment) {
            revert ParamsCommitmentMismatch(t.paramsCommitment, instances[t.inputInstances]);
        }
    }

    /// @dev A verifier revert counts as an invalid proof, unless the call ran out of gas: then the
    /// whole fulfilment reverts, so that a too-low gas limit cannot get an honest prover slashed.
    function _verify(address verifier, bytes calldata proof, uint256[] calldata instances) private returns (bool) {
        uint256 gasBefore = gasleft();
        try IProofVerifier(verifier).verifyProof(proof, instances) returns (bool ok) {
            return ok;
        } catch {
            if (gasleft() <= gasBefore / 63) revert VerifierOutOfGas();
            return false;
        }
    }

    function _settleValid(
        uint256 requestId,
        Request storage r,
        ModelRegistry.Terms memory t,
        uint256[] calldata outputs
    ) private {
        uint256 amount = r.amount;
        uint256 fee = (amount * r.feeBps) / BPS;
        uint256 ownerAmount = (amount * t.ownerShareBps) / BPS;
        uint256 proverAmount = amount - fee - ownerAmount;
        r.status = Status.Fulfilled;
        r.outputHash = keccak256(abi.encodePacked(outputs));
        platformBalance += fee;
        _provers[msg.sender].fulfilled += 1;
        emit RequestFulfilled(requestId, msg.sender, r.outputHash, outputs, ownerAmount, proverAmount, fee);
        if (ownerAmount > 0) usdc.safeTransfer(t.owner, ownerAmount);
        if (proverAmount > 0) usdc.safeTransfer(msg.sender, proverAmount);
    }

    function _settleInvalid(uint256 requestId, Request storage r) private {
        Prover storage p = _provers[msg.sender];
        uint256 slashed = ((p.stake + p.pendingUnstake) * slashBps) / BPS;
        uint256 fromStake = slashed < p.stake ? slashed : p.stake;
        p.stake -= fromStake;
        p.pendingUnstake -= slashed - fromStake;
        platformBalance += slashed;
        p.failed += 1;
        r.status = Status.Rejected;
        emit ProofRejected(requestId, msg.sender, r.amount, slashed);
        usdc.safeTransfer(r.consumer, r.amount);
    }
}
