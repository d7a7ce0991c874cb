"""The settle side of the x402 payment gate: move the money once per payment, follow a settlement left pending,
and read on chain what became of an authorization (``PaymentGate`` is ``Settling`` plus the 402 and verify sides).

Every settlement of one payment runs under that payment's lock (``KeyedLocks``) and is recorded in the gate's
``NonceLedger``: a second call, or a call after a crash, returns the same settlement instead of sending again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from eth_utils.address import to_checksum_address
from x402 import x402ResourceServerSync
from x402.mechanisms.evm.constants import ERR_SETTLEMENT_PENDING

from proofmarket.core.errors import (
    FacilitatorUnavailable,
    PaymentRejected,
    PaymentSettlementFailed,
    PaymentSettlementPending,
)
from proofmarket.payments.exact.accepted import NonceLedger
from proofmarket.payments.exact.reasons import OPAQUE_REASONS, explain
from proofmarket.payments.facilitators import facilitator_call
from proofmarket.payments.onchain import TokenReader
from proofmarket.payments.types import PaidOnChain, VerifiedPayment


class Settling:
    """Settle and follow payments the gate verified (set up by ``PaymentGate``)."""

    ledger: NonceLedger
    _reader: TokenReader | None
    _server: x402ResourceServerSync
    _locks: KeyedLocks

    def initialize(self) -> None:
        raise NotImplementedError

    def settle(self, payment: VerifiedPayment) -> PaidOnChain:
        """Move the money, once: a second call (or a call after a crash) returns the same settlement.

        Before sending, the token is asked about the authorization: already used by a transfer of these
        terms (an earlier attempt landed) -> that settlement; canceled or used otherwise, or expired by chain
        time -> ``PaymentSettlementFailed`` (nothing charged). A transaction sent but not confirmed in time,
        or a send whose outcome is unknown, raises ``PaymentSettlementPending``: follow it with ``follow``.
        """
        self.initialize()
        with self._locks.hold(payment.key):
            entry = self.ledger.get(payment.key)
            if entry is None:
                raise PaymentRejected(
                    "this payment is not reserved here (never verified, or released)", payer=payment.payer
                )
            if entry.settlement is not None:
                return entry.settlement
            settlement = self._settled_on_chain(payment) or self._confirmed(self._facilitator_settle(payment), payment)
            self.ledger.mark_settled(payment.key, settlement)
            return settlement

    async def settle_async(self, payment: VerifiedPayment) -> PaidOnChain:
        return await asyncio.to_thread(self.settle, payment)

    def follow(self, payment: VerifiedPayment, tx_hash: str | None = None) -> PaidOnChain | None:
        """A settlement that was pending: its ``PaidOnChain`` once the authorization's nonce is used by a
        transfer of these terms, None while it is unused and still valid, ``PaymentSettlementFailed`` once it
        expired unused (by chain time) or was canceled: then nobody was charged. Never sends anything."""
        if self._reader is None:
            raise PaymentSettlementFailed(  # a library gate built without a chain; the node always has one
                "this gate has no chain to follow a pending settlement on: its outcome is unknown",
                payer=payment.payer, tx=tx_hash)
        with self._locks.hold(payment.key):
            entry = self.ledger.get(payment.key)
            if entry is not None and entry.settlement is not None:
                return entry.settlement
            settlement = self._settled_on_chain(payment, tx_hash)
            if settlement is not None:
                if entry is None:
                    self.ledger.reserve(payment)
                self.ledger.mark_settled(payment.key, settlement)
            return settlement

    def vanished(self, tx_hash: str) -> bool:
        """Whether a settlement transaction is gone from the chain (orphaned by a reorg, or dropped unmined):
        its authorization, still unused, may be sent again (EIP-3009 lets it move the money once at most)."""
        return self._reader is not None and self._reader.vanished(tx_hash)

    def _confirmed(self, settlement: PaidOnChain, payment: VerifiedPayment) -> PaidOnChain:
        """``settlement`` once its block has the chain profile's confirmations on top; until then
        ``PaymentSettlementPending`` (the call stays settling and is followed: a reorg may still undo it)."""
        shallow = self._reader.unconfirmed(settlement.tx_hash) if self._reader is not None else None
        if shallow is None:
            return settlement
        block, depth, needed = shallow
        raise PaymentSettlementPending(
            f"the settlement is mined in block {block} with {depth} of {needed} confirmations; it counts once they "
            "are there", payer=payment.payer, tx=settlement.tx_hash)

    def balance(self, account: str) -> int | None:
        """The token balance of ``account``, or None when this gate has no chain to read."""
        return self._reader.balance(account) if self._reader is not None else None

    def _settled_on_chain(self, payment: VerifiedPayment, tx_hash: str | None = None) -> PaidOnChain | None:
        """What the token says of the authorization: used by a transfer of these terms -> that settlement
        (``tx_hash`` looked at first); unused and still valid by chain time -> None (safe to send, or still
        pending); canceled or expired unused -> ``PaymentSettlementFailed``; used by a transfer not found
        (beyond the event lookback) -> ``PaymentSettlementPending``: the hold stays."""
        if self._reader is None:
            return None
        if not self._reader.nonce_used(payment):
            chain_now = self._reader.chain_time()
            if chain_now >= payment.valid_before:
                raise PaymentSettlementFailed(
                    "the payment authorization expired before it was settled; nothing was charged",
                    reason="expired_unused", chain_time=chain_now, valid_before=payment.valid_before)
            return None
        found = self._reader.find_settlement(payment, tx_hash)
        if found is not None:
            return self._confirmed(found, payment)
        if self._reader.canceled(payment):
            raise PaymentSettlementFailed(
                "the payer canceled the payment authorization; nothing was charged for this call",
                reason="authorization_canceled", payer=payment.payer
            )
        # Used, not canceled: only a transfer of these very terms can have used it, out of sight here
        # (older than the event lookback). The payer may be charged: never say otherwise, keep the hold.
        raise PaymentSettlementPending(
            "the payment authorization is used on chain by a transfer this node cannot find yet",
            payer=payment.payer, tx=tx_hash)

    def _facilitator_settle(self, payment: VerifiedPayment) -> PaidOnChain:
        try:
            with facilitator_call("settle"):
                result = self._server.settle_payment(payment.payload, payment.requirements)
        except FacilitatorUnavailable as exc:  # it may have sent the transaction: the outcome is unknown
            raise PaymentSettlementPending(
                f"the settlement's outcome is unknown ({exc.message}); following the authorization on chain",
                payer=payment.payer) from exc
        if result.success:
            payer = to_checksum_address(result.payer or payment.payer)
            return PaidOnChain(result.transaction, payer, payment.amount, payment.network)
        if result.error_reason == ERR_SETTLEMENT_PENDING:
            raise PaymentSettlementPending(
                "the settlement transaction is not mined yet; following the authorization on chain",
                payer=payment.payer, tx=result.transaction or None)
        recovered = self._settled_on_chain(payment, result.transaction or None)  # another settler may have won
        if recovered is not None:
            return recovered
        cause = explain(result.error_reason, payment, self._reader, PaymentSettlementFailed,
                        facilitator_message=result.error_message, tx=result.transaction or None)
        # "The transfer failed" with no transaction and no cause on chain (still unused, funded, in its
        # window) is what the SDK answers when sending raised: the transaction may be in a mempool.
        unexplained = type(cause) is PaymentSettlementFailed and result.error_reason in OPAQUE_REASONS
        if isinstance(cause, FacilitatorUnavailable) or (unexplained and not result.transaction):
            raise PaymentSettlementPending(
                f"the settlement's outcome is unknown ({cause.message}); following the authorization on chain",
                payer=payment.payer, tx=result.transaction or None)
        if isinstance(cause, PaymentSettlementFailed):
            raise cause
        raise PaymentSettlementFailed(
            f"the payment could not be settled ({cause.message}); nothing was charged",
            reason=cause.code, payer=payment.payer, tx=result.transaction or None)


class KeyedLocks:
    """One lock per payment key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
