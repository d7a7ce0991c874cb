// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @notice Pulls a payer's deposit into the channel contract (e.g. through an ERC-3009 authorization).
interface IDepositCollector {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data) external;
}

/// @title x402 batch-settlement channels (written for proofmarket from the x402 SDK's interface).
/// @notice Unidirectional payment channels. A payer deposits once; for each request it signs a cumulative voucher
///         (EIP-712 `Voucher(channelId, maxClaimableAmount)`); the receiver claims many channels' charged totals in
///         one transaction (authorised by its receiverAuthorizer's `ClaimBatch` signature) and sweeps what it
///         claimed in one transfer (`settle`). The payer can always leave: a timed withdrawal after the channel's
///         `withdrawDelay`, or a cooperative refund signed by the receiverAuthorizer.
/// @dev Invariants: a channel never pays out more than its balance; a claim never exceeds the payer's signed
///      maxClaimableAmount; `totalClaimed` only grows; every function that moves tokens is nonReentrant and changes
///      state before it transfers. A deposit counts only what the contract's token balance actually gained.
contract BatchSettlement is EIP712, Multicall, ReentrancyGuard {
    using SafeERC20 for IERC20;

    struct ChannelConfig {
        address payer;
        address payerAuthorizer; // signs vouchers (ECDSA); zero: the payer itself, through ERC-1271 or ECDSA
        address receiver;
        address receiverAuthorizer; // signs claim batches and refunds
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }

    struct Voucher {
        ChannelConfig channel;
        uint128 maxClaimableAmount;
    }

    struct VoucherClaim {
        Voucher voucher;
        bytes signature; // the payer authorizer's signature of the voucher
        uint128 totalClaimed; // the cumulative total the receiver claims (<= maxClaimableAmount)
    }

    struct ChannelState {
        uint128 balance; // deposited, minus refunds and withdrawals (claimed funds stay counted in it)
        uint128 totalClaimed;
    }

    struct PendingWithdrawal {
        uint128 amount;
        uint40 initiatedAt;
    }

    struct ReceiverState {
        uint128 totalClaimed;
        uint128 totalSettled;
    }

    uint40 public constant MIN_WITHDRAW_DELAY = 900;
    uint40 public constant MAX_WITHDRAW_DELAY = 2_592_000;

    bytes32 private constant CHANNEL_CONFIG_TYPEHASH = keccak256(
        "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,"
        "address token,uint40 withdrawDelay,bytes32 salt)"
    );
    bytes32 private constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
    bytes32 private constant REFUND_TYPEHASH = keccak256("Refund(bytes32 channelId,uint256 nonce,uint128 amount)");
    bytes32 private constant CLAIM_ENTRY_TYPEHASH =
        keccak256("ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)");
    bytes32 private constant CLAIM_BATCH_TYPEHASH = keccak256(
        "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
    );

    mapping(bytes32 => ChannelState) public channels;
    mapping(bytes32 => PendingWithdrawal) public pendingWithdrawals;
    mapping(address => mapping(address => ReceiverState)) public receivers;
    mapping(bytes32 => uint256) public refundNonce;

    event Deposited(bytes32 indexed channelId, address indexed payer, address indexed collector, uint128 amount);
    event Claimed(bytes32 indexed channelId, address indexed receiver, uint128 amount, uint128 totalClaimed);
    event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
    event WithdrawInitiated(bytes32 indexed channelId, uint128 amount, uint40 finalizableAt);
    event Withdrawn(bytes32 indexed channelId, address indexed payer, uint128 amount);
    event Refunded(bytes32 indexed channelId, address indexed payer, uint128 amount, uint256 nonce);

    error InvalidWithdrawDelay();
    error ZeroAmount();
    error DepositShortfall(uint256 expected, uint256 received);
    error InvalidVoucherSignature(bytes32 channelId);
    error InvalidAuthorizerSignature();
    error ClaimAboveVoucher(bytes32 channelId);
    error ClaimAboveBalance(bytes32 channelId);
    error NotAuthorized();
    error NothingToWithdraw();
    error WithdrawNotReady(uint40 finalizableAt);
    error AmountAboveAvailable(uint128 available);
    error BadRefundNonce(uint256 expected);
    error EmptyClaims();
    error MixedClaimBatch();

    constructor() EIP712("x402 Batch Settlement", "1") {}

    // --- deposits ----------------------------------------------------------------------------------------------------
    function deposit(ChannelConfig calldata config, uint128 amount, address collector, bytes calldata collectorData)
        external
        nonReentrant
    {
        if (amount == 0) revert ZeroAmount();
        _checkDelay(config.withdrawDelay);
        bytes32 id = getChannelId(config);
        IERC20 token = IERC20(config.token);
        uint256 before = token.balanceOf(address(this));
        IDepositCollector(collector).collect(config.payer, config.token, amount, id, collectorData);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received < amount) revert DepositShortfall(amount, received);
        channels[id].balance += amount;
        emit Deposited(id, config.payer, collector, amount);
    }

    // --- claims and the sweep -----------------------------------------------------------------------------------------
    /// @notice Claim by the receiver (or its authorizer) itself.
    function claim(VoucherClaim[] calldata voucherClaims) external nonReentrant {
        if (voucherClaims.length == 0) revert EmptyClaims();
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            ChannelConfig calldata config = voucherClaims[i].voucher.channel;
            if (msg.sender != config.receiver && msg.sender != config.receiverAuthorizer) revert NotAuthorized();
            _claim(voucherClaims[i]);
        }
    }

    /// @notice Claim a batch authorised by the receiverAuthorizer's `ClaimBatch` signature (anyone may submit it).
    function claimWithSignature(VoucherClaim[] calldata voucherClaims, bytes calldata authorizerSignature)
        external
        nonReentrant
    {
        if (voucherClaims.length == 0) revert EmptyClaims();
        address authorizer = voucherClaims[0].voucher.channel.receiverAuthorizer;
        for (uint256 i = 1; i < voucherClaims.length; i++) {
            if (voucherClaims[i].voucher.channel.receiverAuthorizer != authorizer) revert MixedClaimBatch();
        }
        if (!SignatureChecker.isValidSignatureNow(authorizer, getClaimBatchDigest(voucherClaims), authorizerSignature)) {
            revert InvalidAuthorizerSignature();
        }
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            _claim(voucherClaims[i]);
        }
    }

    /// @notice Sweep what `receiver` claimed in `token` to it, in one transfer (anyone may call; funds go to it).
    function settle(address receiver, address token) external nonReentrant {
        ReceiverState storage state = receivers[receiver][token];
        uint128 amount = state.totalClaimed - state.totalSettled;
        if (amount == 0) return;
        state.totalSettled = state.totalClaimed;
        IERC20(token).safeTransfer(receiver, amount);
        emit Settled(receiver, token, msg.sender, amount);
    }

    // --- the payer's exits --------------------------------------------------------------------------------------------
    function initiateWithdraw(ChannelConfig calldata config, uint128 amount) external {
        if (msg.sender != config.payer && msg.sender != config.payerAuthorizer) revert NotAuthorized();
        if (amount == 0) revert ZeroAmount();
        bytes32 id = getChannelId(config);
        uint128 available = _available(id);
        if (amount > available) revert AmountAboveAvailable(available);
        uint40 now40 = uint40(block.timestamp);
        pendingWithdrawals[id] = PendingWithdrawal(amount, now40);
        emit WithdrawInitiated(id, amount, now40 + config.withdrawDelay);
    }

    /// @notice After the delay: the withdrawal (capped at what is not claimed by then) goes to the payer.
    function finalizeWithdraw(ChannelConfig calldata config) external nonReentrant {
        bytes32 id = getChannelId(config);
        PendingWithdrawal memory pending = pendingWithdrawals[id];
        if (pending.initiatedAt == 0) revert NothingToWithdraw();
        uint40 ready = pending.initiatedAt + config.withdrawDelay;
        if (block.timestamp < ready) revert WithdrawNotReady(ready);
        uint128 available = _available(id);
        uint128 amount = pending.amount < available ? pending.amount : available;
        delete pendingWithdrawals[id];
        channels[id].balance -= amount;
        if (amount > 0) IERC20(config.token).safeTransfer(config.payer, amount);
        emit Withdrawn(id, config.payer, amount);
    }

    /// @notice A cooperative refund by the receiver (or its authorizer): `amount` of the unclaimed balance.
    function refund(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        if (msg.sender != config.receiver && msg.sender != config.receiverAuthorizer) revert NotAuthorized();
        bytes32 id = getChannelId(config);
        _refund(config, id, amount, refundNonce[id]);
    }

    /// @notice A cooperative refund the receiverAuthorizer signed (`Refund(channelId, nonce, amount)`): anyone may
    ///         submit it, once (the nonce).
    function refundWithSignature(
        ChannelConfig calldata config,
        uint128 amount,
        uint256 nonce,
        bytes calldata receiverAuthorizerSignature
    ) external nonReentrant {
        bytes32 id = getChannelId(config);
        if (nonce != refundNonce[id]) revert BadRefundNonce(refundNonce[id]);
        if (!SignatureChecker.isValidSignatureNow(
                config.receiverAuthorizer, getRefundDigest(id, nonce, amount), receiverAuthorizerSignature
            )) revert InvalidAuthorizerSignature();
        _refund(config, id, amount, nonce);
    }

    // --- views --------------------------------------------------------------------------------------------------------
    function getChannelId(ChannelConfig calldata config) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    CHANNEL_CONFIG_TYPEHASH,
                    config.payer,
                    config.payerAuthorizer,
                    config.receiver,
                    config.receiverAuthorizer,
                    config.token,
                    config.withdrawDelay,
                    config.salt
                )
            )
        );
    }

    function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, maxClaimableAmount)));
    }

    function getRefundDigest(bytes32 channelId, uint256 nonce, uint128 amount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(REFUND_TYPEHASH, channelId, nonce, amount)));
    }

    function getClaimBatchDigest(VoucherClaim[] calldata voucherClaims) public view returns (bytes32) {
        bytes32[] memory entries = new bytes32[](voucherClaims.length);
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            entries[i] = keccak256(
                abi.encode(
                    CLAIM_ENTRY_TYPEHASH,
                    getChannelId(voucherClaims[i].voucher.channel),
                    voucherClaims[i].voucher.maxClaimableAmount,
                    voucherClaims[i].totalClaimed
                )
            );
        }
        return _hashTypedDataV4(keccak256(abi.encode(CLAIM_BATCH_TYPEHASH, keccak256(abi.encodePacked(entries)))));
    }

    // --- internals ----------------------------------------------------------------------------------------------------
    function _claim(VoucherClaim calldata c) private {
        ChannelConfig calldata config = c.voucher.channel;
        bytes32 id = getChannelId(config);
        if (!_voucherSigned(config, id, c.voucher.maxClaimableAmount, c.signature)) revert InvalidVoucherSignature(id);
        if (c.totalClaimed > c.voucher.maxClaimableAmount) revert ClaimAboveVoucher(id);
        ChannelState storage state = channels[id];
        if (c.totalClaimed > state.balance) revert ClaimAboveBalance(id);
        if (c.totalClaimed <= state.totalClaimed) return; // an older voucher claims nothing more
        uint128 amount = c.totalClaimed - state.totalClaimed;
        state.totalClaimed = c.totalClaimed;
        receivers[config.receiver][config.token].totalClaimed += amount;
        emit Claimed(id, config.receiver, amount, c.totalClaimed);
    }

    function _refund(ChannelConfig calldata config, bytes32 id, uint128 amount, uint256 nonce) private {
        if (amount == 0) revert ZeroAmount();
        uint128 available = _available(id);
        if (amount > available) revert AmountAboveAvailable(available);
        refundNonce[id] = nonce + 1;
        channels[id].balance -= amount;
        // what is refunded counts towards a pending exit, whose clock keeps running: a refund (of 1 unit, say) never
        // restarts the payer's wait
        PendingWithdrawal storage pending = pendingWithdrawals[id];
        if (pending.amount <= amount) delete pendingWithdrawals[id];
        else pending.amount -= amount;
        IERC20(config.token).safeTransfer(config.payer, amount);
        emit Refunded(id, config.payer, amount, nonce);
    }

    function _voucherSigned(ChannelConfig calldata config, bytes32 id, uint128 maxClaimable, bytes calldata signature)
        private
        view
        returns (bool)
    {
        bytes32 digest = getVoucherDigest(id, maxClaimable);
        if (config.payerAuthorizer != address(0)) {
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
            return err == ECDSA.RecoverError.NoError && signer == config.payerAuthorizer;
        }
        return SignatureChecker.isValidSignatureNow(config.payer, digest, signature);
    }

    function _available(bytes32 id) private view returns (uint128) {
        ChannelState storage state = channels[id];
        return state.balance - state.totalClaimed;
    }

    function _checkDelay(uint40 delay) private pure {
        if (delay < MIN_WITHDRAW_DELAY || delay > MAX_WITHDRAW_DELAY) revert InvalidWithdrawDelay();
    }
}
