"""Credits and passes bought with one x402 ``exact`` payment, with the call path's rule for a settlement that is not
final: pending is a state, never a refusal.

    buy         the purchase is held in the book first (a pending transfer from the payer's wallet to its credits,
                or to the pass's account; the payment and what it buys in its memo), then settled through the exact
                rail's gate
    settled     captured in the same database transaction as the credits journal entry (or the pass row): 200
    pending     the facilitator stopped waiting, the transfer may still be mined: 202 with the purchase's id; the
                settler follows it with the exact rail's ``follow_payment`` (the code that follows a pending call)
                and credits it once mined, or voids it once the authorization expired unused (nothing charged)
    refused     voided at once, the payment's reservation released

``GET /v1/purchases/{id}`` answers what became of it (the id is the payment's own key: nobody else can guess it).
"""

from __future__ import annotations

import logging
from typing import Any

from proofmarket.core.errors import (
    PaymentRejected,
    PaymentRequired,
    PaymentSettlementFailed,
    PaymentSettlementPending,
    UsageError,
)
from proofmarket.db.book import Accounts, Transfer
from proofmarket.db.book_tables import TransferRow
from proofmarket.payments.credits.repo import CreditsRepo
from proofmarket.payments.credits.tables import CreditEntryRow
from proofmarket.payments.exact.rail import X402Payments
from proofmarket.payments.headers import PAYMENT_REQUIRED_HEADER
from proofmarket.payments.types import VerifiedPayment

log = logging.getLogger(__name__)

KIND = "purchase"


class Purchases:
    def __init__(self, repo: CreditsRepo, exact: X402Payments) -> None:
        self.repo, self.exact, self.book = repo, exact, repo.book

    # --- buying ----------------------------------------------------------------------------------
    def checkout(self, header: str | None, amount: int, pay_to: str, resource: str, description: str,
                 what: dict[str, Any]) -> dict[str, Any]:
        """``what`` for one exact payment of ``amount`` to ``pay_to`` (the node's account): without a payment
        (``header`` empty) ``PaymentRequired`` with the terms in its PAYMENT-REQUIRED header; else verified through
        the exact rail's gate and bought (``buy``)."""
        gate = self.exact.gate
        requirements = gate.requirements(amount, pay_to)
        if not header:
            err = PaymentRequired(f"{description}: pay {amount} atomic USDC over x402 (exact)", amount=str(amount))
            err.headers = {PAYMENT_REQUIRED_HEADER: gate.payment_required_header(requirements, resource,
                                                                                 description=description)}
            raise err
        return self.buy(gate.verify(header, requirements, resource), what)

    def buy(self, verified: VerifiedPayment, what: dict[str, Any]) -> dict[str, Any]:
        """Hold, settle and credit one purchase (``what``: ``{"kind": "credits"}`` or ``{"kind": "pass",
        "calls_per_day", "days", "model_id"}``). Returns its view; ``status`` is ``credited`` or ``pending``."""
        ref = self.hold(verified, what)
        closed = self.book.closing(ref)
        if closed is not None:  # this very payment was bought with before
            if closed.phase == "void":
                raise PaymentRejected("this payment was refused before (its purchase was voided): sign a new one",
                                      purchase=verified.key)
            return self.answer(verified.key)  # credited already: the same answer, nothing charged twice
        try:
            settled = self.exact.gate.settle(verified)
        except PaymentSettlementPending as exc:
            self.book.note_tx(ref, *([str(exc.details["tx"])] if exc.details.get("tx") else []))
            log.info("purchase %s is pending: %s", verified.key, exc.message)
            return self.answer(verified.key)
        except BaseException as exc:
            self._void(ref, verified, getattr(exc, "message", str(exc)))
            raise
        self.complete(ref, settled.tx_hash)
        return self.answer(verified.key)

    def hold(self, verified: VerifiedPayment, what: dict[str, Any]) -> str:
        payer = verified.payer.lower()
        ref = f"{KIND}:{verified.key}"
        memo: dict[str, Any] = {"payment": verified.to_json(), "what": what}
        if what["kind"] == "pass":
            target = Accounts.pass_(f"x402:{verified.key}")
            memo["per_call"] = str(verified.amount // (int(what["calls_per_day"]) * int(what["days"])))
        else:
            target = Accounts.credits(payer)
        self.book.hold(Transfer.move(ref, KIND, "x402", Accounts.wallet(payer), target, verified.amount,
                                     model_id=what.get("model_id"), payer=payer, memo=memo))
        return ref

    def complete(self, ref: str, tx_hash: str) -> None:
        """Capture the purchase and credit what it bought, in one database transaction (once)."""
        pending = self.book.transfer(ref)
        if pending is None:
            raise UsageError(f"no purchase {ref}")
        memo, payer = pending.memo or {}, str(pending.payer)
        what, key = memo.get("what") or {}, ref.removeprefix(f"{KIND}:")
        amount = VerifiedPayment.from_json(memo["payment"]).amount
        with self.repo.db.write_session() as s:
            self.book.capture(ref, tx_hash=tx_hash, session=s)
            if what.get("kind") == "pass":
                self.repo.add_pass(payer, what.get("model_id"), int(what["calls_per_day"]), int(what["days"]),
                                   f"x402:{key}", session=s)
            elif s.query(CreditEntryRow.id).filter(CreditEntryRow.ref == f"x402:{key}").first() is None:
                self.repo.add(payer, "purchase", amount, f"x402:{key}", session=s)

    def _void(self, ref: str, verified: VerifiedPayment, reason: str) -> None:
        self.book.void(ref, reason=reason)
        self.exact.gate.release(verified)

    # --- following -------------------------------------------------------------------------------
    def follow(self) -> dict[str, int]:
        """One look at every pending purchase: credited once mined, voided once it cannot be (nothing charged)."""
        counts = {"credited": 0, "voided": 0, "pending": 0, "failed": 0}
        for pending in self.book.open_pending(KIND):
            try:
                counts[self.follow_one(pending)] += 1
            except Exception:  # one purchase the chain cannot answer for now must not stop the others
                log.exception("could not follow purchase %s", pending.ref)
                counts["failed"] += 1
        return counts

    def follow_one(self, pending: TransferRow) -> str:
        memo = pending.memo or {}
        verified = VerifiedPayment.from_json(memo["payment"])
        sent = list(memo.get("sent_txs") or [])
        try:
            settled = self.exact.follow_payment(verified, sent[-1] if sent else None)
        except PaymentSettlementFailed as exc:
            self._void(pending.ref, verified, exc.message)
            return "voided"
        except PaymentSettlementPending:
            return "pending"
        if settled is None:
            return "pending"
        self.complete(pending.ref, settled.tx_hash)
        return "credited"

    # --- reading ---------------------------------------------------------------------------------
    def view(self, key: str) -> dict[str, Any]:
        ref = f"{KIND}:{key}"
        pending = self.book.transfer(ref)
        if pending is None:
            raise UsageError("no purchase with this id on this node", purchase=key)
        closed = self.book.closing(ref)
        memo = pending.memo or {}
        status = "pending" if closed is None else "credited" if closed.phase == "post" else "voided"
        amount = sum(a for _, a in self.book.postings([pending.id])[pending.id] if a > 0)
        out: dict[str, Any] = {"id": key, "status": status, "wallet": pending.payer, "amount": str(amount),
                               "what": memo.get("what"), "poll": f"/v1/purchases/{key}",
                               "transaction": closed.tx_hash if closed is not None else None,
                               "created_at": pending.created_at.isoformat()}
        if closed is not None and closed.phase == "void":
            out["reason"] = (closed.memo or {}).get("reason")
        return out

    def answer(self, key: str) -> dict[str, Any]:
        """The view its payer gets when it buys: with the wallet's balance or the pass it bought (``view`` alone is
        what the unauthenticated poll shows: whoever knows the payment's key)."""
        out = self.view(key)
        pending = self.book.transfer(f"{KIND}:{key}")
        what = ((pending.memo or {}).get("what") or {}) if pending is not None else {}
        if out["status"] == "credited" and what.get("kind") == "credits":
            out["balance"] = str(self.repo.balance(str(out["wallet"])))
        if out["status"] == "credited" and what.get("kind") == "pass":
            held = self.repo.pass_by_ref(f"x402:{key}")
            out["pass"] = held.view() if held is not None else None
        return out
