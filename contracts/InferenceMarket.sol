// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC3009} from "@openzeppelin/contracts/interfaces/draft-IERC3009.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {IInferenceConsumer} from "./InferenceConsumer.sol";

/// @notice The EZKL Halo2Verifier interface. A verifier may revert on a bad proof instead of
/// returning false; both count as an invalid proof.
interface IProofVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}

/// @notice Holds the x402 payments of one (model, prover) pair until InferenceMarket.releaseSplit pays them
/// out: x402 `payTo` is this contract's CREATE2 address (InferenceMarket.splitterFor), known before it exists.
contract RevenueSplitter {
    using SafeERC20 for IERC20;

    address public immutable market;
    IERC20 public immutable usdc;

    error OnlyMarket(address caller);

    constructor(IERC20 usdc_) {
        market = msg.sender;
        usdc = usdc_;
    }

    /// @notice Send the whole USDC balance to the market (which splits it).
    function sweep() external returns (uint256 amount) {
        if (msg.sender != market) revert OnlyMarket(msg.sender);
        amount = usdc.balanceOf(address(this));
        if (amount > 0) usdc.safeTransfer(market, amount);
    }
}

/// @title InferenceMarket: USDC escrow for proven ML inference.
/// @notice Flow: a consumer escrows the model's price for (modelId, inputCommitment, deadline); the request
/// snapshots the model's terms (owner, verifier, shares, instance layout) and the market's fee and slash
/// share, so later owner or admin changes never touch an open request. An authorised prover holding at
/// least `minStake` claims it (`acceptRequest`, which locks `claimBond` out of its stake for `claimWindow`),
/// proves, and fulfils it; only the claimer can fulfil, so a copied pending fulfilment reverts. A claim that
/// lapses lets another prover claim, and its bond goes to the consumer. The input commitment is
/// keccak256(abi.encodePacked(instances[0:inputInstances])).
/// - A proof with the wrong number of instances, or whose input or params instances do not match the
///   request, is refused (revert): nobody is slashed and the claim stays.
/// - Valid proof: the output hash is recorded, the owner's and the prover's shares are credited to them
///   (`earned`; `withdraw` pays what is owed, to the account itself, whoever calls it) and the platform's to
///   its balance, the bond returns to the prover's stake, its `fulfilled` counter goes up. Credits, not
///   transfers, keep the USDC transfers out of the fulfilment (about 27k of its gas on every call), and a
///   recipient USDC refuses (a blocklisted address) cannot stop a fulfilment.
/// - Invalid proof (false or revert): the consumer gets the full amount back, the prover's stake (active +
///   pending unstake) is slashed by the request's slash share, and its bond is forfeited, both into the
///   platform's balance (not the consumer's, so that an owner colluding with a consumer cannot profit from
///   a verifier that rejects honest proofs); `failed` goes up.
/// - After the deadline the consumer may take the amount back (plus a live claimer's bond); the claimer's
///   `expired` goes up.
/// Admin parameters are bounded and change only after `paramsDelay` (scheduleParams, then applyParams).
/// De-authorising a prover stops its new claims; a claim it holds can still be fulfilled.
/// - A request made with `requestInferenceWithCallback` (by a consumer contract, `InferenceConsumer.sol`) also
///   escrows a `tip` for the prover, and a valid proof's outputs are delivered to the consumer
///   (`onInferenceResult`) with `callbackGas` gas, after the payment is credited: a callback that reverts or runs out
///   of gas changes no payment (`CallbackDelivered(.., false)`; `retryCallback` delivers it again, whoever pays the
///   gas). A fulfilment that cannot forward the whole `callbackGas` reverts, so that no prover can starve a callback.
/// Pausing stops new requests only. x402 pay-per-call money is split the same way through per-(model,
/// prover) RevenueSplitter addresses (`splitterFor`, `releaseSplit`).
contract InferenceMarket is Ownable, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint16 public constant BPS = 10_000;
    uint16 public constant MAX_PLATFORM_FEE_BPS = 1_000;
    uint16 public constant MAX_SLASH_BPS = 5_000;
    uint64 public constant MAX_UNSTAKE_DELAY = 30 days;
    uint64 public constant MAX_REQUEST_TTL = 30 days;
    uint64 public constant MIN_CLAIM_WINDOW = 60;
    uint64 public constant MAX_CLAIM_WINDOW = 1 days;
    uint64 public constant MAX_PARAMS_DELAY = 30 days;
    uint256 public constant MAX_MIN_STAKE = 1_000_000 * 10 ** 6;
    uint24 public constant MAX_CALLBACK_GAS = 2_000_000;
    uint256 private constant CALLBACK_RESERVE = 40_000; // what the fulfilment still does after a callback returns

    enum Status {
        None,
        Open,
        Accepted,
        Fulfilled,
        Rejected,
        Refunded
    }

    /// @notice Admin-set market parameters (bounded; changed with a delay).
    struct Params {
        uint16 platformFeeBps;
        uint16 slashBps;
        uint64 unstakeDelay;
        uint64 claimWindow;
        uint256 minStake;
        uint256 claimBond;
    }

    /// @notice A request as `getRequest` returns it.
    struct Request {
        address consumer;
        uint64 deadline;
        uint16 feeBps;
        uint16 slashBps;
        Status status;
        address prover;
        uint64 claimExpiry;
        uint96 amount;
        bytes32 modelId;
        bytes32 inputCommitment;
        bytes32 outputHash;
        uint256 bond;
        Snapshot terms;
    }

    /// @dev How a Request is stored: the claimer's bond and the output hash never live at the same time (the
    /// bond goes back when the output hash is recorded), so they share one slot, `outcome`: the bond while the
    /// request is Open or Accepted, the output hash once Fulfilled, zero otherwise. A fulfilment then writes
    /// a slot that holds the bond (2,900 gas) instead of a fresh one (22,100).
    struct RequestSlots {
        address consumer;
        uint64 deadline;
        uint16 feeBps;
        uint16 slashBps;
        Status status;
        address prover;
        uint64 claimExpiry;
        uint24 callbackGas; // 0: no callback
        uint96 amount; // the price plus `tip`
        uint96 tip; // the prover's, for the callback's gas
        bytes32 modelId;
        bytes32 inputCommitment;
        uint256 outcome;
        Snapshot terms;
    }

    /// @notice The model's terms when the request was made (`createdAt`: when; it shares the verifier's slot).
    struct Snapshot {
        address owner;
        address verifier;
        uint16 ownerShareBps;
        uint16 inputInstances;
        uint16 instanceCount;
        uint48 createdAt;
        uint256 paramsCommitment;
    }

    /// @dev Where a batch proof's slots are, and what fulfillBatch checks each request against.
    struct BatchLayout {
        uint256 perInput;
        uint256 perOutput;
        uint256 outputsAt;
        uint256 size;
        uint256 taken;
        uint256 lastId;
        bytes32 modelId;
        uint64 registeredAt;
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

    /// @dev How a Prover is stored: the stake and the counters share one slot, so that a fulfilment (bond
    /// back to the stake, `fulfilled` up) writes one slot, not two. `getProver` returns the Prover above.
    struct ProverSlots {
        uint128 stake;
        uint32 fulfilled;
        uint32 failed;
        uint32 expired;
        bool authorized;
        uint128 pendingUnstake;
        uint64 unlockAt;
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

    /// @notice A call paid with x402's `proven` scheme: the consumer's EIP-3009 ReceiveWithAuthorization of
    /// `maxAmount` to this market, its nonce `provenNonce(modelId, inputCommitment, maxAmount, prover, salt)`: the
    /// signature moves money only into a settlement of this model, on this input, by this prover, at most this much.
    struct ProvenCall {
        address consumer;
        bytes32 modelId;
        bytes32 inputCommitment;
        uint96 maxAmount;
        Authorization auth;
    }

    bytes32 public constant PROVEN_CALL_TYPEHASH =
        keccak256("ProvenCall(bytes32 modelId,bytes32 inputCommitment,uint96 maxAmount,address prover,bytes32 salt)");

    IERC20 public immutable usdc;
    ModelRegistry public immutable registry;
    uint64 public immutable paramsDelay;

    Params private _params;
    Params private _pendingParams;
    uint64 public pendingParamsEta;
    uint256 public platformBalance;
    uint256 public requestCount;
    /// @notice What an address earned as model owner or prover (escrow fulfilments and split releases).
    mapping(address account => uint256) public earned;
    /// @notice What of `earned` was paid out to the address; `owed` is the rest.
    mapping(address account => uint256) public withdrawn;

    mapping(uint256 requestId => RequestSlots) private _requests;
    /// @notice A callback that failed and may be delivered again (`retryCallback`).
    mapping(uint256 requestId => bool) public callbackOwed;
    mapping(address prover => ProverSlots) private _provers;

    event RequestCreated(
        uint256 indexed requestId,
        bytes32 indexed modelId,
        address indexed consumer,
        bytes32 inputCommitment,
        uint96 amount,
        uint64 deadline
    );
    event AuthorizedCall(
        uint256 indexed requestId, bytes32 indexed modelId, address indexed consumer, bytes32 inputCommitment, uint96 amount
    );
    event RequestAccepted(uint256 indexed requestId, address indexed prover, uint256 bond, uint64 claimExpiry);
    event ClaimLapsed(uint256 indexed requestId, address indexed prover, uint256 bondToConsumer);
    event RequestFulfilled(
        uint256 indexed requestId,
        address indexed prover,
        bytes32 outputHash,
        uint256[] outputs,
        uint256 ownerAmount,
        uint256 proverAmount,
        uint256 platformFee
    );
    event CallbackRequested(uint256 indexed requestId, uint24 callbackGas, uint96 tip);
    event CallbackDelivered(uint256 indexed requestId, address indexed consumer, bool ok);
    event ProofRejected(uint256 indexed requestId, address indexed prover, uint256 refunded, uint256 slashed);
    event RequestRefunded(uint256 indexed requestId, address indexed consumer, uint256 amount, address prover);
    event SplitReleased(
        bytes32 indexed modelId,
        address indexed prover,
        address indexed owner,
        uint256 ownerAmount,
        uint256 proverAmount,
        uint256 platformFee
    );
    event Staked(address indexed prover, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed prover, uint256 amount, uint64 unlockAt);
    event Unstaked(address indexed prover, uint256 amount);
    event ProverAuthorizationChanged(address indexed prover, bool authorized);
    event ParamsScheduled(Params params, uint64 eta);
    event ParamsApplied(Params params);
    event ParamsCanceled();
    event PlatformWithdrawal(address indexed to, uint256 amount);
    event Withdrawal(address indexed account, uint256 amount);
    event WithdrawalSkipped(address indexed account, uint256 amount);

    error ModelInactive(bytes32 modelId);
    error InvalidProof();
    error PriceAboveMax(uint96 price, uint96 maxAmount);
    error BadCallbackGas(uint24 callbackGas, uint24 max);
    error CallbackGasShort(uint256 requestId, uint256 callbackGas);
    error NoCallbackOwed(uint256 requestId);
    error OutputsMismatch(uint256 requestId);
    error InvalidDeadline(uint64 deadline, uint256 nowTs);
    error UnknownRequest(uint256 requestId);
    error RequestNotPending(uint256 requestId, Status status);
    error RequestNotOpen(uint256 requestId, Status status);
    error RequestExpired(uint256 requestId, uint64 deadline);
    error DeadlineNotReached(uint256 requestId, uint64 deadline);
    error NotConsumer(uint256 requestId, address caller);
    error NotAssignedProver(uint256 requestId, address assigned);
    error ClaimExpired(uint256 requestId, uint64 claimExpiry);
    error ProverNotAuthorized(address prover);
    error InsufficientStake(address prover, uint256 stake, uint256 minStake);
    error InstanceCountMismatch(uint256 given, uint256 expected);
    error InputCommitmentMismatch(bytes32 expected, bytes32 actual);
    error ParamsCommitmentMismatch(uint256 expected, uint256 actual);
    error VerifierOutOfGas();
    error BadBatch(uint256 requests, uint16 size);
    error NoBatchVerifier(bytes32 modelId, uint16 size);
    error BatchVerifierTooNew(uint256 requestId, uint64 registeredAt);
    error BatchModelMismatch(uint256 requestId, bytes32 modelId);
    error BatchSlotTaken(uint16 slot);
    error BatchOrder(uint256 requestId);
    error FeeTooHigh(uint16 bps, uint16 maxBps);
    error SlashTooHigh(uint16 bps, uint16 maxBps);
    error UnstakeDelayTooLong(uint64 delay);
    error ClaimWindowOutOfRange(uint64 window);
    error MinStakeTooHigh(uint256 amount);
    error ClaimBondTooHigh(uint256 bond, uint256 minStake);
    error ParamsDelayTooLong(uint64 delay);
    error NoPendingParams();
    error ParamsNotDue(uint64 eta);
    error ZeroAmount();
    error TransferRefused(address account);
    error InsufficientBalance(uint256 available, uint256 requested);
    error UnstakeLocked(uint64 unlockAt);

    constructor(IERC20 usdc_, ModelRegistry registry_, address admin, Params memory params_, uint64 paramsDelay_)
        Ownable(admin)
    {
        if (paramsDelay_ > MAX_PARAMS_DELAY) revert ParamsDelayTooLong(paramsDelay_);
        usdc = usdc_;
        registry = registry_;
        paramsDelay = paramsDelay_;
        _checkParams(params_);
        _params = params_;
        emit ParamsApplied(params_);
    }

    // --- consumers ------------------------------------------------------------------------------

    /// @notice Escrow the model's price (pulled with transferFrom: approve first).
    function requestInference(bytes32 modelId, bytes32 inputCommitment, uint64 deadline)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 requestId)
    {
        uint96 price;
        (requestId, price) = _createRequest(msg.sender, modelId, inputCommitment, deadline);
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
        uint96 price;
        (requestId, price) = _createRequest(consumer, modelId, inputCommitment, deadline);
        bytes32 nonce = authorizationNonce(modelId, inputCommitment, deadline, auth.salt);
        IERC3009(address(usdc)).receiveWithAuthorization(
            consumer, address(this), price, auth.validAfter, auth.validBefore, nonce, auth.v, auth.r, auth.s
        );
    }

    /// @notice Escrow the model's price plus `tip` (approve first) for a result delivered to the caller, a consumer
    /// contract (`IInferenceConsumer`), with `callbackGas` gas once its proof verified; the tip goes to the prover.
    function requestInferenceWithCallback(
        bytes32 modelId,
        bytes32 inputCommitment,
        uint64 deadline,
        uint24 callbackGas,
        uint96 tip
    ) external whenNotPaused nonReentrant returns (uint256 requestId) {
        if (callbackGas == 0 || callbackGas > MAX_CALLBACK_GAS) revert BadCallbackGas(callbackGas, MAX_CALLBACK_GAS);
        uint96 price;
        (requestId, price) = _createRequest(msg.sender, modelId, inputCommitment, deadline);
        RequestSlots storage r = _requests[requestId];
        (r.callbackGas, r.tip, r.amount) = (callbackGas, tip, price + tip);
        emit CallbackRequested(requestId, callbackGas, tip);
        usdc.safeTransferFrom(msg.sender, address(this), uint256(price) + tip);
    }

    /// @notice Deliver a failed callback again, with the outputs of its `RequestFulfilled` event (checked against
    /// the recorded output hash). Anyone may, paying the gas; a callback that reverts again reverts this call.
    function retryCallback(uint256 requestId, uint256[] calldata outputs) external nonReentrant {
        RequestSlots storage r = _requests[requestId];
        if (!callbackOwed[requestId]) revert NoCallbackOwed(requestId);
        if (keccak256(abi.encodePacked(outputs)) != bytes32(r.outcome)) revert OutputsMismatch(requestId);
        delete callbackOwed[requestId];
        emit CallbackDelivered(requestId, r.consumer, true);
        IInferenceConsumer(r.consumer).onInferenceResult(requestId, r.modelId, outputs);
    }

    /// @notice Take the escrowed amount (and a live claimer's bond) back once the deadline has passed.
    function refund(uint256 requestId) external nonReentrant {
        RequestSlots storage r = _pending(requestId);
        if (msg.sender != r.consumer) revert NotConsumer(requestId, msg.sender);
        if (block.timestamp <= r.deadline) revert DeadlineNotReached(requestId, r.deadline);
        r.status = Status.Refunded;
        uint256 bond = r.outcome;
        r.outcome = 0;
        if (r.prover != address(0)) _provers[r.prover].expired += 1;
        emit RequestRefunded(requestId, r.consumer, r.amount, r.prover);
        usdc.safeTransfer(r.consumer, r.amount + bond);
    }

    // --- x402 `proven`: paid only for a proof the chain verified ---------------------------------

    /// @notice Settle an x402 `proven` payment with its proof. The proof is verified first; only a valid one moves
    /// the consumer's authorization: the model's price (at most `maxAmount`) is paid and split as `fulfill` pays it,
    /// the rest of `maxAmount` goes back to the consumer at once. An invalid proof reverts (`InvalidProof`): nothing
    /// moves, nobody is slashed (nothing was escrowed) and the authorization lapses unused at its `validBefore`.
    /// The caller is the prover the nonce names, and must be eligible.
    function fulfillAuthorized(ProvenCall calldata call, bytes calldata proof, uint256[] calldata instances)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 requestId)
    {
        _requireEligible(msg.sender);
        requestId = _openAuthorized(call);
        RequestSlots storage r = _requests[requestId];
        Snapshot memory t = r.terms;
        uint256 outputStart = _checkBinding(call.inputCommitment, t, instances);
        if (!_verify(t.verifier, proof, instances)) revert InvalidProof();
        _collect(call, r.amount);
        _settleValid(requestId, r, t, instances[outputStart:]);
    }

    /// @notice `fulfillAuthorized` for several x402 `proven` calls of one model with one proof of its batch circuit
    /// of `size` calls: call `calls[j]` is the call in slot `slots[j]` (bound as `fulfillBatch` binds a request).
    /// All are paid if the proof is valid; an invalid one reverts and moves nothing. The batch verifier must have
    /// been registered before each authorization's `validAfter` (the payer's signing time): one registered after
    /// the payer signed never settles its payment.
    function fulfillAuthorizedBatch(
        ProvenCall[] calldata calls,
        uint16[] calldata slots,
        uint16 size,
        bytes calldata proof,
        uint256[] calldata instances
    ) external whenNotPaused nonReentrant {
        uint256 n = calls.length;
        if (n == 0 || n > size || slots.length != n) revert BadBatch(n, size);
        _requireEligible(msg.sender);
        bytes32 modelId = calls[0].modelId;
        ModelRegistry.BatchVerifier memory batch = registry.batchVerifier(modelId, size);
        if (batch.verifier == address(0)) revert NoBatchVerifier(modelId, size);
        uint256 first = requestCount + 1;
        for (uint256 j = 0; j < n; ++j) {
            _openAuthorized(calls[j]);
        }
        BatchLayout memory layout = _batchLayout(_requests[first].terms, size, instances);
        (layout.modelId, layout.registeredAt) = (modelId, batch.registeredAt);
        for (uint256 j = 0; j < n; ++j) {
            _bindSlot(first + j, slots[j], layout, instances);
        }
        if (!_verify(batch.verifier, proof, instances)) revert InvalidProof();
        for (uint256 j = 0; j < n; ++j) {
            _collect(calls[j], _requests[first + j].amount);
            _settleSlot(first + j, slots[j], true, layout, instances);
        }
    }

    // --- provers --------------------------------------------------------------------------------

    /// @notice Claim a request: lock `claimBond` of the caller's stake; until the claim expires
    /// (min(now + claimWindow, deadline)) only the caller may fulfil it. A lapsed claim may be taken over,
    /// and the lapsed claimer's bond goes to the consumer.
    function acceptRequest(uint256 requestId) external nonReentrant {
        RequestSlots storage r = _pending(requestId);
        if (block.timestamp >= r.deadline) revert RequestExpired(requestId, r.deadline);
        if (r.status == Status.Accepted) {
            if (block.timestamp <= r.claimExpiry) revert RequestNotOpen(requestId, r.status);
            _lapse(requestId, r);
        }
        _requireEligible(msg.sender);
        uint256 bond = _params.claimBond;
        ProverSlots storage p = _provers[msg.sender];
        if (p.stake < bond) revert InsufficientStake(msg.sender, p.stake, bond);
        p.stake -= SafeCast.toUint128(bond);
        uint64 expiry = uint64(block.timestamp) + _params.claimWindow;
        if (expiry > r.deadline) expiry = r.deadline;
        (r.status, r.prover, r.claimExpiry, r.outcome) = (Status.Accepted, msg.sender, expiry, bond);
        emit RequestAccepted(requestId, msg.sender, bond, expiry);
    }

    /// @notice Settle a claimed request with a proof. See the contract notice for the outcomes.
    function fulfill(uint256 requestId, bytes calldata proof, uint256[] calldata instances) external nonReentrant {
        RequestSlots storage r = _claimedBy(requestId);
        Snapshot memory t = r.terms;
        uint256 outputStart = _checkBinding(r.inputCommitment, t, instances);
        if (_verify(t.verifier, proof, instances)) {
            _settleValid(requestId, r, t, instances[outputStart:]);
        } else {
            _settleInvalid(requestId, r);
        }
    }

    /// @notice Settle several claimed requests of one model with one proof of the model's batch circuit of `size`
    /// calls (`ModelRegistry.batchVerifier`): request `requestIds[j]` is the call in slot `slots[j]`; the other slots
    /// hold calls that are not escrow requests, or padding, and are not read. Each request is bound to its slot as
    /// `fulfill` binds one (its input commitment, the params commitment) and settled as `fulfill` settles it: all
    /// paid if the proof is valid, all refunded and slashed if not. The batch verifier must have been registered
    /// before every one of the requests was made; `requestIds` strictly increase (each request once).
    function fulfillBatch(
        uint256[] calldata requestIds,
        uint16[] calldata slots,
        uint16 size,
        bytes calldata proof,
        uint256[] calldata instances
    ) external nonReentrant {
        uint256 n = requestIds.length;
        if (n == 0 || n > size || slots.length != n) revert BadBatch(n, size);
        bytes32 modelId = _requests[requestIds[0]].modelId;
        ModelRegistry.BatchVerifier memory batch = registry.batchVerifier(modelId, size);
        if (batch.verifier == address(0)) revert NoBatchVerifier(modelId, size);
        BatchLayout memory layout = _batchLayout(_requests[requestIds[0]].terms, size, instances);
        (layout.modelId, layout.registeredAt) = (modelId, batch.registeredAt);
        for (uint256 j = 0; j < n; ++j) {
            _bindSlot(requestIds[j], slots[j], layout, instances);
        }
        bool valid = _verify(batch.verifier, proof, instances);
        for (uint256 j = 0; j < n; ++j) {
            _settleSlot(requestIds[j], slots[j], valid, layout, instances);
        }
    }

    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        ProverSlots storage p = _provers[msg.sender];
        p.stake += SafeCast.toUint128(amount);
        emit Staked(msg.sender, amount, p.stake);
        usdc.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Move stake to the unstaking queue; it stays slashable until withdrawn with unstake().
    /// Each call restarts the delay for the whole queued amount.
    function requestUnstake(uint256 amount) external nonReentrant {
        ProverSlots storage p = _provers[msg.sender];
        if (amount == 0) revert ZeroAmount();
        if (amount > p.stake) revert InsufficientBalance(p.stake, amount);
        p.stake -= SafeCast.toUint128(amount);
        p.pendingUnstake += SafeCast.toUint128(amount);
        p.unlockAt = uint64(block.timestamp) + _params.unstakeDelay;
        emit UnstakeRequested(msg.sender, amount, p.unlockAt);
    }

    function unstake() external nonReentrant {
        ProverSlots storage p = _provers[msg.sender];
        uint256 amount = p.pendingUnstake;
        if (amount == 0) revert ZeroAmount();
        if (block.timestamp < p.unlockAt) revert UnstakeLocked(p.unlockAt);
        p.pendingUnstake = 0;
        emit Unstaked(msg.sender, amount);
        usdc.safeTransfer(msg.sender, amount);
    }

    // --- x402 revenue splits --------------------------------------------------------------------

    /// @notice Where x402 payments for `modelId` proved by `prover` are paid (a RevenueSplitter, CREATE2).
    function splitterFor(bytes32 modelId, address prover) public view returns (address) {
        bytes32 initCode = keccak256(abi.encodePacked(type(RevenueSplitter).creationCode, abi.encode(usdc)));
        bytes32 salt = keccak256(abi.encode(modelId, prover));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, initCode)))));
    }

    /// @notice Pay out what the splitter of (modelId, prover) holds: the model's current owner share to its
    /// owner, the platform fee to the platform balance, the rest to the prover. Anyone may call it.
    function releaseSplit(bytes32 modelId, address prover) external nonReentrant returns (uint256 amount) {
        ModelRegistry.Terms memory t = registry.terms(modelId);
        address splitter = splitterFor(modelId, prover);
        if (splitter.code.length == 0) {
            new RevenueSplitter{salt: keccak256(abi.encode(modelId, prover))}(usdc);
        }
        amount = RevenueSplitter(splitter).sweep();
        uint256 fee = (amount * _params.platformFeeBps) / BPS;
        uint256 ownerAmount = (amount * t.ownerShareBps) / BPS;
        uint256 proverAmount = amount - fee - ownerAmount;
        platformBalance += fee;
        earned[t.owner] += ownerAmount;
        earned[prover] += proverAmount;
        emit SplitReleased(modelId, prover, t.owner, ownerAmount, proverAmount, fee);
        _payOut(t.owner);
        _payOut(prover);
    }

    // --- payouts --------------------------------------------------------------------------------

    /// @notice What the market owes `account` (earned, not yet paid out).
    function owed(address account) public view returns (uint256) {
        return earned[account] - withdrawn[account];
    }

    /// @notice Pay `account` what it is owed, to `account` itself. Anyone may call it (a node paying out its
    /// models' owners in one batch, an owner from a wallet): the money can only go to the account.
    function withdraw(address account) external nonReentrant returns (uint256 amount) {
        amount = _payOut(account);
        if (amount == 0 && owed(account) > 0) revert TransferRefused(account);
        if (amount == 0) revert ZeroAmount();
    }

    /// @notice `withdraw` for many accounts in one transaction; accounts owed nothing are skipped, and so is an
    /// account the token refuses (said with `WithdrawalSkipped`; still owed).
    function withdrawMany(address[] calldata accounts) external nonReentrant returns (uint256 total) {
        for (uint256 i = 0; i < accounts.length; ++i) {
            total += _payOut(accounts[i]);
        }
    }

    // --- admin ----------------------------------------------------------------------------------

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }

    /// @notice Takes effect for new claims only: a claim a prover holds can still be fulfilled.
    function setProverAuthorized(address prover, bool authorized) external onlyOwner {
        _provers[prover].authorized = authorized;
        emit ProverAuthorizationChanged(prover, authorized);
    }

    /// @notice Propose new parameters; they apply after `paramsDelay` (applyParams) and never to open requests'
    /// fee and slash share. A new proposal replaces the pending one and restarts the delay.
    function scheduleParams(Params calldata p) external onlyOwner {
        _checkParams(p);
        _pendingParams = p;
        pendingParamsEta = uint64(block.timestamp) + paramsDelay;
        emit ParamsScheduled(p, pendingParamsEta);
    }

    /// @notice Apply the pending parameters once their delay has passed. Anyone may call it.
    function applyParams() external {
        uint64 eta = pendingParamsEta;
        if (eta == 0) revert NoPendingParams();
        if (block.timestamp < eta) revert ParamsNotDue(eta);
        _params = _pendingParams;
        delete _pendingParams;
        pendingParamsEta = 0;
        emit ParamsApplied(_params);
    }

    function cancelParams() external onlyOwner {
        if (pendingParamsEta == 0) revert NoPendingParams();
        delete _pendingParams;
        pendingParamsEta = 0;
        emit ParamsCanceled();
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

    function params() external view returns (Params memory) {
        return _params;
    }

    function pendingParams() external view returns (Params memory) {
        return _pendingParams;
    }

    function platformFeeBps() external view returns (uint16) {
        return _params.platformFeeBps;
    }

    function slashBps() external view returns (uint16) {
        return _params.slashBps;
    }

    function minStake() external view returns (uint256) {
        return _params.minStake;
    }

    function unstakeDelay() external view returns (uint64) {
        return _params.unstakeDelay;
    }

    function getRequest(uint256 requestId) external view returns (Request memory) {
        RequestSlots storage r = _requests[requestId];
        bool fulfilled = r.status == Status.Fulfilled;
        return Request(r.consumer, r.deadline, r.feeBps, r.slashBps, r.status, r.prover, r.claimExpiry, r.amount,
            r.modelId, r.inputCommitment, fulfilled ? bytes32(r.outcome) : bytes32(0), fulfilled ? 0 : r.outcome,
            r.terms);
    }

    /// @notice A request's callback: its gas (0: none), the prover's tip, and whether a failed one is owed.
    function callbackOf(uint256 requestId) external view returns (uint24 callbackGas, uint96 tip, bool retryable) {
        RequestSlots storage r = _requests[requestId];
        return (r.callbackGas, r.tip, callbackOwed[requestId]);
    }

    function getProver(address prover) external view returns (Prover memory) {
        ProverSlots storage p = _provers[prover];
        return Prover(p.stake, p.pendingUnstake, p.unlockAt, p.authorized, p.fulfilled, p.failed, p.expired);
    }

    function isEligible(address prover) public view returns (bool) {
        ProverSlots storage p = _provers[prover];
        return p.authorized && p.stake >= _params.minStake && p.stake >= _params.claimBond;
    }

    function authorizationNonce(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(modelId, inputCommitment, deadline, salt));
    }

    /// @notice The EIP-3009 nonce an x402 `proven` authorization is signed with (`ProvenCall`).
    function provenNonce(bytes32 modelId, bytes32 inputCommitment, uint96 maxAmount, address prover, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(PROVEN_CALL_TYPEHASH, modelId, inputCommitment, maxAmount, prover, salt));
    }

    /// @notice keccak256 of the packed 32-byte instances, the rule for input and output hashes.
    function instancesHash(uint256[] calldata instances) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(instances));
    }

    // --- internals ------------------------------------------------------------------------------

    function _checkParams(Params memory p) private pure {
        if (p.platformFeeBps > MAX_PLATFORM_FEE_BPS) revert FeeTooHigh(p.platformFeeBps, MAX_PLATFORM_FEE_BPS);
        if (p.slashBps > MAX_SLASH_BPS) revert SlashTooHigh(p.slashBps, MAX_SLASH_BPS);
        if (p.unstakeDelay > MAX_UNSTAKE_DELAY) revert UnstakeDelayTooLong(p.unstakeDelay);
        if (p.claimWindow < MIN_CLAIM_WINDOW || p.claimWindow > MAX_CLAIM_WINDOW) {
            revert ClaimWindowOutOfRange(p.claimWindow);
        }
        if (p.minStake > MAX_MIN_STAKE) revert MinStakeTooHigh(p.minStake);
        if (p.claimBond > p.minStake) revert ClaimBondTooHigh(p.claimBond, p.minStake);
    }

    function _createRequest(address consumer, bytes32 modelId, bytes32 inputCommitment, uint64 deadline)
        private
        returns (uint256 requestId, uint96 price)
    {
        if (deadline <= block.timestamp || deadline > block.timestamp + MAX_REQUEST_TTL) {
            revert InvalidDeadline(deadline, block.timestamp);
        }
        (requestId, price) = _newRequest(consumer, modelId, inputCommitment, deadline);
        emit RequestCreated(requestId, modelId, consumer, inputCommitment, price, deadline);
    }

    /// @dev An x402 `proven` call's record, claimed by the caller: settled in the same transaction.
    function _openAuthorized(ProvenCall calldata call) private returns (uint256 requestId) {
        uint96 price;
        (requestId, price) = _newRequest(call.consumer, call.modelId, call.inputCommitment, uint64(block.timestamp));
        if (price > call.maxAmount) revert PriceAboveMax(price, call.maxAmount);
        RequestSlots storage r = _requests[requestId];
        (r.status, r.prover, r.claimExpiry) = (Status.Accepted, msg.sender, uint64(block.timestamp));
        // the payer signed at validAfter: a batch verifier registered since (one it could not have seen) never
        // settles it (_bindSlot); an authorization valid from 0 is never settled in a batch
        r.terms.createdAt = uint48(call.auth.validAfter);
        emit AuthorizedCall(requestId, call.modelId, call.consumer, call.inputCommitment, price);
    }

    /// @dev Pull an x402 `proven` call's authorization (it names this model, input, maximum and the caller as its
    /// prover) and give back what exceeds the price.
    function _collect(ProvenCall calldata call, uint256 price) private {
        Authorization calldata a = call.auth;
        bytes32 nonce = provenNonce(call.modelId, call.inputCommitment, call.maxAmount, msg.sender, a.salt);
        IERC3009(address(usdc)).receiveWithAuthorization(
            call.consumer, address(this), call.maxAmount, a.validAfter, a.validBefore, nonce, a.v, a.r, a.s
        );
        if (call.maxAmount > price) usdc.safeTransfer(call.consumer, call.maxAmount - price);
    }

    function _newRequest(address consumer, bytes32 modelId, bytes32 inputCommitment, uint64 deadline)
        private
        returns (uint256 requestId, uint96 price)
    {
        ModelRegistry.Terms memory t = registry.terms(modelId);
        if (!t.active) revert ModelInactive(modelId);
        price = t.price;
        requestId = ++requestCount;
        RequestSlots storage r = _requests[requestId];
        (r.consumer, r.deadline, r.status) = (consumer, deadline, Status.Open);
        (r.feeBps, r.slashBps) = (_params.platformFeeBps, _params.slashBps);
        (r.amount, r.modelId, r.inputCommitment) = (price, modelId, inputCommitment);
        r.terms = Snapshot(
            t.owner, t.verifier, t.ownerShareBps, t.inputInstances, t.instanceCount, uint48(block.timestamp),
            t.paramsCommitment
        );
    }

    function _lapse(uint256 requestId, RequestSlots storage r) private {
        address lapsed = r.prover;
        uint256 bond = r.outcome;
        _provers[lapsed].expired += 1;
        (r.status, r.prover, r.claimExpiry, r.outcome) = (Status.Open, address(0), 0, 0);
        emit ClaimLapsed(requestId, lapsed, bond);
        if (bond > 0) usdc.safeTransfer(r.consumer, bond);
    }

    function _pending(uint256 requestId) private view returns (RequestSlots storage r) {
        r = _requests[requestId];
        if (r.status == Status.None) revert UnknownRequest(requestId);
        if (r.status != Status.Open && r.status != Status.Accepted) revert RequestNotPending(requestId, r.status);
    }

    /// @dev Where a batch proof's slots are: every slot's input instances, the params commitment once (checked
    /// here), every slot's output instances.
    function _batchLayout(Snapshot memory t, uint16 size, uint256[] calldata instances)
        private
        pure
        returns (BatchLayout memory layout)
    {
        uint256 params = t.paramsCommitment != 0 ? 1 : 0;
        layout.perInput = t.inputInstances;
        layout.perOutput = uint256(t.instanceCount) - layout.perInput - params;
        layout.outputsAt = size * layout.perInput + params;
        layout.size = size;
        uint256 expected = layout.outputsAt + size * layout.perOutput;
        if (instances.length != expected) revert InstanceCountMismatch(instances.length, expected);
        if (params == 1 && instances[layout.outputsAt - 1] != t.paramsCommitment) {
            revert ParamsCommitmentMismatch(t.paramsCommitment, instances[layout.outputsAt - 1]);
        }
    }

    /// @dev Bind a claimed request to its slot of a batch proof: same model, made after the batch verifier was
    /// registered, a slot of its own, its input commitment the slot's input instances.
    function _bindSlot(uint256 requestId, uint16 slot, BatchLayout memory layout, uint256[] calldata instances)
        private
        view
    {
        if (requestId <= layout.lastId) revert BatchOrder(requestId); // each request once: ids strictly increase
        layout.lastId = requestId;
        RequestSlots storage r = _claimedBy(requestId);
        if (r.modelId != layout.modelId) revert BatchModelMismatch(requestId, r.modelId);
        if (layout.registeredAt >= r.terms.createdAt) revert BatchVerifierTooNew(requestId, layout.registeredAt);
        if (slot >= layout.size || layout.taken & (1 << slot) != 0) revert BatchSlotTaken(slot);
        layout.taken |= 1 << slot;
        uint256 from = slot * layout.perInput;
        bytes32 actual = keccak256(abi.encodePacked(instances[from:from + layout.perInput]));
        if (actual != r.inputCommitment) revert InputCommitmentMismatch(r.inputCommitment, actual);
    }

    function _settleSlot(
        uint256 requestId,
        uint16 slot,
        bool valid,
        BatchLayout memory layout,
        uint256[] calldata instances
    ) private {
        RequestSlots storage r = _requests[requestId];
        if (r.status != Status.Accepted) revert RequestNotPending(requestId, r.status);
        if (!valid) return _settleInvalid(requestId, r);
        uint256 at = layout.outputsAt + uint256(slot) * layout.perOutput;
        _settleValid(requestId, r, r.terms, instances[at:at + layout.perOutput]);
    }

    /// @dev A pending request the caller claimed, its claim live.
    function _claimedBy(uint256 requestId) private view returns (RequestSlots storage r) {
        r = _pending(requestId);
        if (r.status != Status.Accepted || r.prover != msg.sender) revert NotAssignedProver(requestId, r.prover);
        if (block.timestamp > r.claimExpiry) revert ClaimExpired(requestId, r.claimExpiry);
    }

    function _requireEligible(address prover) private view {
        ProverSlots storage p = _provers[prover];
        if (!p.authorized) revert ProverNotAuthorized(prover);
        if (p.stake < _params.minStake) revert InsufficientStake(prover, p.stake, _params.minStake);
    }

    /// @dev Instances are [input..., params commitment (hashed params only), output...].
    function _checkBinding(bytes32 inputCommitment, Snapshot memory t, uint256[] calldata instances)
        private
        pure
        returns (uint256 outputStart)
    {
        if (instances.length != t.instanceCount) revert InstanceCountMismatch(instances.length, t.instanceCount);
        outputStart = uint256(t.inputInstances) + (t.paramsCommitment != 0 ? 1 : 0);
        bytes32 actual = keccak256(abi.encodePacked(instances[:t.inputInstances]));
        if (actual != inputCommitment) revert InputCommitmentMismatch(inputCommitment, actual);
        if (t.paramsCommitment != 0 && instances[t.inputInstances] != t.paramsCommitment) {
            revert ParamsCommitmentMismatch(t.paramsCommitment, instances[t.inputInstances]);
        }
    }

    /// @dev A verifier revert counts as an invalid proof, unless the call ran out of gas (here, or in a verifier
    /// it calls, which says so with `VerifierOutOfGas()`): then the whole fulfilment reverts, so that a too-low gas
    /// limit cannot get an honest prover slashed.
    function _verify(address verifier, bytes calldata proof, uint256[] calldata instances) private returns (bool) {
        uint256 gasBefore = gasleft();
        try IProofVerifier(verifier).verifyProof(proof, instances) returns (bool ok) {
            return ok;
        } catch (bytes memory reason) {
            if (gasleft() <= gasBefore / 63 || (reason.length >= 4 && bytes4(reason) == VerifierOutOfGas.selector)) {
                revert VerifierOutOfGas();
            }
            return false;
        }
    }

    function _settleValid(uint256 requestId, RequestSlots storage r, Snapshot memory t, uint256[] calldata outputs)
        private
    {
        uint256 amount = r.amount;
        uint256 price = amount - r.tip;
        uint256 fee = (price * r.feeBps) / BPS;
        uint256 ownerAmount = (price * t.ownerShareBps) / BPS;
        uint256 proverAmount = amount - fee - ownerAmount; // with the tip
        r.status = Status.Fulfilled;
        bytes32 outputHash = keccak256(abi.encodePacked(outputs));
        uint256 bond = r.outcome;
        r.outcome = uint256(outputHash);
        platformBalance += fee;
        ProverSlots storage p = _provers[msg.sender];
        (p.stake, p.fulfilled) = (p.stake + SafeCast.toUint128(bond), p.fulfilled + 1);
        earned[t.owner] += ownerAmount;
        earned[msg.sender] += proverAmount;
        emit RequestFulfilled(requestId, msg.sender, outputHash, outputs, ownerAmount, proverAmount, fee);
        if (r.callbackGas != 0) _deliver(requestId, r, outputs);
    }

    /// @dev Call the consumer with the whole `callbackGas` (or revert the fulfilment: a prover cannot starve the
    /// callback), copying no return data (a consumer cannot make the prover pay for its memory); a failure is
    /// recorded, and retryable, and changes no payment (everything was credited before).
    function _deliver(uint256 requestId, RequestSlots storage r, uint256[] calldata outputs) private {
        uint256 limit = r.callbackGas;
        if (gasleft() < limit + limit / 63 + CALLBACK_RESERVE) revert CallbackGasShort(requestId, limit);
        address consumer = r.consumer;
        bytes memory data = abi.encodeCall(IInferenceConsumer.onInferenceResult, (requestId, r.modelId, outputs));
        bool ok;
        assembly ("memory-safe") {
            ok := call(limit, consumer, 0, add(data, 32), mload(data), 0, 0)
        }
        if (!ok) callbackOwed[requestId] = true;
        emit CallbackDelivered(requestId, consumer, ok);
    }

    /// @dev Pay `account` what it is owed. A transfer the token refuses (a blocklisted account) leaves the amount
    /// owed and is said (`WithdrawalSkipped`): one such payee never reverts a release or a batch for the others.
    function _payOut(address account) private returns (uint256 amount) {
        uint256 total = earned[account];
        amount = total - withdrawn[account];
        if (amount == 0) return 0;
        withdrawn[account] = total;
        (bool ok, bytes memory answer) = address(usdc).call(abi.encodeCall(IERC20.transfer, (account, amount)));
        if (!ok || (answer.length > 0 && !abi.decode(answer, (bool)))) {
            withdrawn[account] = total - amount;
            emit WithdrawalSkipped(account, amount);
            return 0;
        }
        emit Withdrawal(account, amount);
    }

    function _settleInvalid(uint256 requestId, RequestSlots storage r) private {
        ProverSlots storage p = _provers[msg.sender];
        uint256 slashed = ((uint256(p.stake) + p.pendingUnstake) * r.slashBps) / BPS;
        uint256 fromStake = slashed < p.stake ? slashed : p.stake;
        p.stake -= SafeCast.toUint128(fromStake);
        p.pendingUnstake -= SafeCast.toUint128(slashed - fromStake);
        platformBalance += slashed + r.outcome;
        r.outcome = 0;
        p.failed += 1;
        r.status = Status.Rejected;
        emit ProofRejected(requestId, msg.sender, r.amount, slashed);
        usdc.safeTransfer(r.consumer, r.amount);
    }
}
