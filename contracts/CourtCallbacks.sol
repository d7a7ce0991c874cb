// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {AttestationCourt} from "./AttestationCourt.sol";
import {IAttestedConsumer, ICourtCallbacks} from "./AttestedConsumer.sol";

/// @title CourtCallbacks: attested court requests with a callback into the consumer contract.
/// @notice The AttestationCourt pays an attested result only after its challenge window, and answers consumers with
/// events. A consumer contract requests through this contract (the court's consumer of record) and gets the result
/// in `onAttestedResult` (`AttestedConsumer.sol`, shipped in the package) once the court paid it: `deliver` reads
/// the court's own record (status Paid, output hash, bundle digest), so nobody can deliver a result the court did
/// not pay. Anyone may call `deliver` (the node, a keeper, the dApp): the first successful delivery earns the
/// request's `tip`. The consumer's call gets exactly `callbackGas` gas (a `deliver` that cannot forward it reverts)
/// and no return data is copied; a callback that reverts or runs out of gas changes nothing at the court (the node
/// stays paid), is said (`CallbackDelivered(.., false)`) and can be delivered again. A request the court refunded
/// (no commitment before its deadline, a cheat slashed, an undecided vote) is handed back to its consumer with its
/// tip (`reclaim`).
contract CourtCallbacks is ICourtCallbacks, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint24 public constant MAX_CALLBACK_GAS = 2_000_000;
    uint256 private constant CALLBACK_RESERVE = 40_000;

    struct Entry {
        address consumer;
        uint24 callbackGas;
        bool done; // delivered, or its money handed back
        uint96 amount; // what the court escrowed
        uint96 tip; // the first successful deliverer's
    }

    AttestationCourt public immutable court;
    IERC20 public immutable usdc;
    mapping(uint256 requestId => Entry) public entries;

    event CallbackRequested(uint256 indexed requestId, address indexed consumer, uint24 callbackGas, uint96 tip);
    event CallbackDelivered(uint256 indexed requestId, address indexed consumer, bool ok);
    event Reclaimed(uint256 indexed requestId, address indexed consumer, uint256 amount);

    error BadCallbackGas(uint24 callbackGas, uint24 max);
    error NotOurs(uint256 requestId);
    error AlreadyDone(uint256 requestId);
    error NotPaid(uint256 requestId, AttestationCourt.Status status);
    error NotRefunded(uint256 requestId, AttestationCourt.Status status);
    error CallbackGasShort(uint256 requestId, uint256 callbackGas);

    constructor(AttestationCourt court_) {
        court = court_;
        usdc = court_.usdc();
    }

    /// @notice Request an attested result from `node` through the court, paying at most `maxPrice` (what is not
    /// used goes back) plus `tip` from the caller (approve this contract first); the caller is called back.
    function request(bytes32 modelId, bytes32 inputCommitment, uint64 deadline, address node, uint96 maxPrice,
        uint24 callbackGas, uint96 tip) external nonReentrant returns (uint256 requestId) {
        if (callbackGas == 0 || callbackGas > MAX_CALLBACK_GAS) revert BadCallbackGas(callbackGas, MAX_CALLBACK_GAS);
        usdc.safeTransferFrom(msg.sender, address(this), uint256(maxPrice) + tip);
        uint256 before = usdc.balanceOf(address(this));
        usdc.forceApprove(address(court), maxPrice);
        requestId = court.request(modelId, inputCommitment, deadline, node);
        usdc.forceApprove(address(court), 0);
        uint256 used = before - usdc.balanceOf(address(this));
        entries[requestId] = Entry(msg.sender, callbackGas, false, uint96(used), tip);
        emit CallbackRequested(requestId, msg.sender, callbackGas, tip);
        if (maxPrice > used) usdc.safeTransfer(msg.sender, maxPrice - used);
    }

    /// @notice Call the consumer with the result the court paid; the first success pays its caller the tip.
    function deliver(uint256 requestId) external nonReentrant returns (bool ok) {
        Entry storage e = _open(requestId);
        AttestationCourt.Request memory r = court.getRequest(requestId);
        if (r.status != AttestationCourt.Status.Paid) revert NotPaid(requestId, r.status);
        uint256 limit = e.callbackGas;
        if (gasleft() < limit + limit / 63 + CALLBACK_RESERVE) revert CallbackGasShort(requestId, limit);
        bytes memory data = abi.encodeCall(IAttestedConsumer.onAttestedResult,
            (requestId, r.modelId, r.outputHash, r.bundleDigest));
        address consumer = e.consumer;
        assembly ("memory-safe") {
            ok := call(limit, consumer, 0, add(data, 32), mload(data), 0, 0)
        }
        emit CallbackDelivered(requestId, consumer, ok);
        if (ok) {
            e.done = true;
            if (e.tip > 0) usdc.safeTransfer(msg.sender, e.tip);
        }
    }

    /// @notice Hand a refunded request's money (and tip) back to its consumer, asking the court for the refund
    /// first when the request is still open past its deadline. Anyone may call it.
    function reclaim(uint256 requestId) external nonReentrant {
        Entry storage e = _open(requestId);
        AttestationCourt.Request memory r = court.getRequest(requestId);
        if (r.status == AttestationCourt.Status.Open) {
            court.refund(requestId);
            r.status = AttestationCourt.Status.Refunded;
        }
        if (r.status != AttestationCourt.Status.Refunded && r.status != AttestationCourt.Status.Slashed) {
            revert NotRefunded(requestId, r.status);
        }
        e.done = true;
        uint256 amount = uint256(e.amount) + e.tip;
        emit Reclaimed(requestId, e.consumer, amount);
        usdc.safeTransfer(e.consumer, amount);
    }

    function _open(uint256 requestId) private view returns (Entry storage e) {
        e = entries[requestId];
        if (e.consumer == address(0)) revert NotOurs(requestId);
        if (e.done) revert AlreadyDone(requestId);
    }
}
