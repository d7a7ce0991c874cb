"""The one payout path: what the book says the node owes a payee leaves for the chain here, for every rail.

    owed        each ``payee:<address>`` account's posted balance (credits draws, pass calls, channel charges once
                claimed), by model
    pay         one pending ``payout`` transfer per (payee, model) holds what is owed; one USDC transfer from the
                node's account pays the payee the sum; each pending transfer notes the transaction
    confirm     once the transaction has the chain profile's confirmations, the payouts are captured (the payee's
                ``wallet:`` account is credited); a transfer that reverted, or that the chain no longer knows, is
                voided (still owed: paid on the next pass)
    split       a payee that is a listing's revenue splitter is released right after (``after_payout(model_id)``:
                the market's ``releaseSplit`` pays the owner, the prover and the platform their shares on chain)
    blocked     a payee the token refuses (a blocklisted address: the transfer reverts before it is sent) is skipped,
                its hold voided with ``blocked`` in the void's memo, and tried again after a backoff that doubles
                with each refusal (``BLOCKED_BACKOFF_S`` up to ``BLOCKED_BACKOFF_MAX_S``); every other payee is paid
                in the same run. ``blocked()`` names them for the payout report, the earnings view and the ledger
                check

An owner can trigger nothing here; the node's settler runs it on a schedule and an operator runs it now with
``proofmarket payouts run``. One payer at a time: callers hold the settler's lease.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import UsdcToken
from proofmarket.core.background import Lease, lease_holder
from proofmarket.core.errors import BookBehindChain, ChainError, ContractReverted, FeeTooHigh, TransactionNotMined
from proofmarket.db.book import Accounts, Book, Transfer
from proofmarket.db.book_find import named
from proofmarket.db.book_tables import TransferRow

log = logging.getLogger(__name__)

KIND = "payout"
LEASE = "payouts"  # one payout run at a time on every node of the database (the settler's and the sweeper's)
LEASE_TTL_S = 600.0  # renewed before each transfer, which waits for its receipt at most ChainClient.receipt_timeout
CONFIRMED_KINDS = (KIND, "refund")  # pending transfers sent on chain that a pass confirms (or voids)
BLOCKED_BACKOFF_S = 300.0  # a payee the token refused is tried again after this, doubled at each refusal
BLOCKED_BACKOFF_MAX_S = 86_400.0


@dataclass
class PayoutReport:
    paid: dict[str, str] = field(default_factory=dict)  # payee -> transaction
    confirmed: list[str] = field(default_factory=list)  # payout refs captured
    voided: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # sent, not deep enough yet (or with an unknown outcome)
    blocked: dict[str, dict[str, Any]] = field(default_factory=dict)  # payee -> why, since when, next try
    skipped: bool = False  # another run held the payouts lease
    held: str | None = None  # why nothing was paid: the node's account sent what its book does not hold

    def to_json(self) -> dict[str, Any]:
        return {"paid": self.paid, "confirmed": self.confirmed, "voided": self.voided, "waiting": self.waiting,
                "blocked": self.blocked, "skipped": self.skipped, "held": self.held}


class Payouts:
    def __init__(self, book: Book, client: ChainClient, usdc: str, sender: LocalAccount,
                 after_payout: Callable[[str], None] | None = None, min_atomic: int = 1,
                 lease: Lease | None = None, gate: Callable[[], None] | None = None) -> None:
        self.book, self.client, self.usdc, self.sender = book, client, usdc, sender
        self.after_payout, self.min_atomic, self.lease = after_payout, min_atomic, lease
        self.gate = gate  # raises BookBehindChain while the chain shows transfers the book does not hold
        self.holder = lease_holder(self)

    def owed(self) -> dict[str, dict[str | None, int]]:
        """Each payee's payable balance, by model (the node's own account excluded: nothing to move)."""
        out: dict[str, dict[str | None, int]] = {}
        for account, balance in self.book.accounts("payee:").items():
            address = Accounts.address_of(account)
            if balance.available >= self.min_atomic and address != self.sender.address.lower():
                out[address] = {m: a for m, a in self.book.by_model(account).items() if a > 0}
        return out

    def run(self) -> PayoutReport:
        """Confirm what earlier passes sent, then pay every payee what it is owed: one run at a time on every node
        of the database (the ``payouts`` lease, renewed before each transfer; another holder's run: nothing done)."""
        report = PayoutReport()
        if not self._leased():
            report.skipped = True
            return report
        try:
            self._confirm(report)
            if self.gate is not None:
                try:
                    self.gate()
                except BookBehindChain as exc:  # paying now could pay twice what a restore forgot
                    log.error("payouts held: %s", exc.message)
                    report.held = exc.message
                    return report
            now = time.time()
            for payee, models in sorted(self.owed().items()):
                if not models:
                    continue
                blocked = self.blocked_state(payee)
                if blocked is not None and blocked["retry_at"] > now:
                    report.blocked[payee] = blocked  # refused lately: tried again after its backoff
                    continue
                if not self._leased():  # lost the lease (a transfer took longer than it): stop here
                    break
                try:
                    self._pay(payee, models, report)
                except ContractReverted as exc:  # the token refuses this payee: the others are paid all the same
                    log.warning("the token refuses the payout to %s (%s): skipped, tried again later", payee,
                                exc.message)
                    report.blocked[payee] = self.blocked_state(payee) or {"reason": exc.message}
        finally:
            if self.lease is not None:
                self.lease.release(LEASE, self.holder)
        return report

    def _leased(self) -> bool:
        return self.lease is None or self.lease.acquire(LEASE, self.holder, ttl_s=LEASE_TTL_S)

    def _pay(self, payee: str, models: dict[str | None, int], report: PayoutReport) -> None:
        batch = secrets.token_hex(6)
        refs = []
        for model_id, amount in sorted(models.items(), key=lambda m: str(m[0])):
            ref = f"payout:{payee}:{batch}:{model_id or '-'}"
            self.book.hold(Transfer.move(ref, KIND, "payout", Accounts.payee(payee), Accounts.wallet(payee), amount,
                                         model_id=model_id, memo={"batch": batch}))
            refs.append(ref)
        total = sum(models.values())
        try:
            tx = UsdcToken(self.client, self.usdc).transfer(to_checksum_address(payee), total, self.sender).tx_hash
        except TransactionNotMined as exc:  # sent: it may still be mined; the next pass looks for it
            hashes = [str(h) for h in exc.details.get("hashes") or []]  # type: ignore[attr-defined]
            for ref in refs:
                self.book.note_tx(ref, *hashes)
            report.waiting += refs
            return
        except ContractReverted as exc:
            token = UsdcToken(self.client, self.usdc)
            short = token.balance_of(self.sender.address) < total
            for ref in refs:  # refused (a blocklisted payee), or reverted: nothing moved, still owed
                self.book.void(ref, reason=(f"the node account holds less than {total}: {exc.message}" if short else
                                            f"the token refused the payout: {exc.message}")[:300],
                               note=None if short else {"blocked": True})
            if short:  # the node's own account, not this payee: every payout would fail alike; stop the run
                raise ChainError(f"the node account {self.sender.address} holds less USDC than the payout of {total} "
                                 "it owes: fund it (the ledger check's solvency says by how much)",
                                 needed=str(total)) from exc
            raise
        except FeeTooHigh:
            for ref in refs:  # never sent: nothing moved, still owed
                self.book.void(ref, reason="the payout transfer was not sent (fees too high)")
            raise
        except Exception:
            # the transfer may have left (the RPC failed while waiting for its receipt): never pay twice. The hold
            # stays, marked; the ledger check names it until an operator reads the chain
            for ref in refs:
                self.book.note_outcome_unknown(ref)
            report.waiting += refs
            raise
        for ref in refs:
            self.book.note_tx(ref, tx)
        report.paid[payee] = tx
        log.info("paid %s atomic units to %s in %s", total, payee, tx)
        for ref in refs:  # mined already (the transfer waited for its receipt): captured now if deep enough
            sent = self.book.transfer(ref)
            if sent is not None:
                self._confirm_one(sent, report)
        for model_id in sorted(m for m in models if m):
            self._released(model_id)

    def blocked_state(self, payee: str) -> dict[str, Any] | None:
        """Whether the token refused ``payee`` on its latest tries (the void memos since its last payout that went
        through): why, since when, how many times and when it is tried next; None when it is not blocked."""
        refusals: list[TransferRow] = []
        for row in named(self.book, f"{KIND}:{payee.lower()}:", limit=200):
            if row.phase == "void" and (row.memo or {}).get("blocked"):
                refusals.append(row)
            elif row.phase in ("post", "single"):
                break  # paid since: whatever was refused before is over
        if not refusals:
            return None
        batches = {str((r.memo or {}).get("batch")) for r in refusals}  # one try may hold several models
        last = refusals[0]
        backoff = min(BLOCKED_BACKOFF_S * 2 ** (len(batches) - 1), BLOCKED_BACKOFF_MAX_S)
        return {"reason": str((last.memo or {}).get("reason", "")), "attempts": len(batches),
                "since": refusals[-1].created_at.isoformat(), "last": last.created_at.isoformat(),
                "retry_at": last.created_at.timestamp() + backoff}

    def blocked(self) -> dict[str, dict[str, Any]]:
        """Every payee owed something whose payouts the token refuses (for the report, earnings and the check)."""
        out = {}
        for payee in self.owed():
            state = self.blocked_state(payee)
            if state is not None:
                out[payee] = state
        return out

    def _confirm(self, report: PayoutReport) -> None:
        """Every pending payout (and credits refund) sent on chain: captured once deep enough, voided once its
        transaction failed or is gone (still owed), left waiting otherwise."""
        for kind in CONFIRMED_KINDS:
            for pending in self.book.open_pending(kind):
                self._confirm_one(pending, report)

    def _confirm_one(self, pending: TransferRow, report: PayoutReport) -> None:
        hashes = [str(h) for h in (pending.memo or {}).get("sent_txs") or []]
        if not hashes:
            # no known transaction: being sent right now, or a crash or an RPC failure between the send and its
            # record. It may have left: never voided here (that could pay twice); the ledger check names it
            report.waiting.append(pending.ref)
            return
        found = [(tx, r) for tx, r in ((tx, self.client.receipt(tx)) for tx in hashes) if r is not None]
        mined = [(tx, r) for tx, r in found if int(r["status"]) == 1]
        if not mined:
            if found or all(self.client.vanished(tx) for tx in hashes):
                self.book.void(pending.ref, reason=f"the payout transaction {hashes[-1]} failed or is gone")
                report.voided.append(pending.ref)
            else:
                report.waiting.append(pending.ref)
            return
        tx, receipt = mined[0]
        depth = self.client.block_number() - int(receipt["blockNumber"]) + 1
        if depth < max(1, self.client.profile.confirmations):
            report.waiting.append(pending.ref)
            return
        self.book.capture(pending.ref, tx_hash=tx)
        report.confirmed.append(pending.ref)

    def _released(self, model_id: str) -> None:
        if self.after_payout is None:
            return
        try:
            self.after_payout(model_id)
        except Exception:  # the money moved: a release that fails is retried by the listing's own loop
            log.exception("releasing the split of model %s after its payout failed", model_id)
