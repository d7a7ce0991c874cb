"""An owner's earnings in the book, over every rail: what the node owes its models' payees, what is on its way to
them, and what was paid (an x402 call paid straight to the payee, a payout of credits, pass and channel money), by
model, with the transactions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from proofmarket.db.book import Accounts, Book

PAID_KINDS = ("capture", "payout")
NOT_REVENUE = ("payout", "withdrawal", "deposit", "purchase", "refund")  # money moved, not earned by a call


def earnings(book: Book, models: list[str], limit: int = 200) -> dict[str, Any]:
    """``{"owed", "in_flight", "paid", "models": {id: {...}}, "by_rail": {rail: revenue}, "by_day": [{"day",
    "revenue"}], "transactions": [...]}`` for ``models`` (atomic units as decimal strings). Revenue is what a call
    earned the models' payees when it was captured (credited to what the node owes them, or paid to them straight
    on chain by an x402 ``exact`` capture); payouts move what was earned, so they are not revenue again."""
    if not models:
        return {"owed": "0", "in_flight": "0", "paid": "0", "models": {}, "by_rail": {}, "by_day": [],
                "transactions": []}
    rows = book.transfers(models=models, limit=100_000)
    postings = book.postings(t.id for t in rows)
    closed = {t.pending_ref: t for t in rows if t.pending_ref}
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"owed": 0, "in_flight": 0, "paid": 0})
    shown: list[dict[str, Any]] = []
    by_rail: dict[str, int] = defaultdict(int)
    by_day: dict[str, int] = defaultdict(int)
    for t in rows:
        legs = postings.get(t.id, [])
        m = per[str(t.model_id)]
        if t.phase in ("single", "post") and t.kind not in NOT_REVENUE:
            earned = sum(a for acc, a in legs if a > 0 and (acc.startswith("payee:") or (
                t.kind == "capture" and Accounts.is_external(acc))))
            if earned:
                by_rail[str(t.rail)] += earned
                by_day[t.created_at.date().isoformat()] += earned
        if t.phase in ("single", "post"):
            m["owed"] += sum(a for acc, a in legs if acc.startswith("payee:"))
            if t.kind in PAID_KINDS:
                m["paid"] += sum(a for acc, a in legs if Accounts.is_external(acc) and a > 0)
        elif t.phase == "pending" and t.ref not in closed and t.kind == "payout":
            held = sum(-a for acc, a in legs if acc.startswith("payee:") and a < 0)
            m["in_flight"] += held
            m["owed"] -= held
        if t.phase != "void" and len(shown) < limit:
            shown.append({"ref": t.ref, "kind": t.kind, "rail": t.rail, "phase": t.phase, "model_id": t.model_id,
                          "amount": str(sum(a for _, a in legs if a > 0)), "transaction": t.tx_hash,
                          "created_at": t.created_at.isoformat()})
    total = {k: sum(v[k] for v in per.values()) for k in ("owed", "in_flight", "paid")}
    return {**{k: str(v) for k, v in total.items()},
            "models": {mid: {k: str(v) for k, v in vals.items()} for mid, vals in sorted(per.items())},
            "by_rail": {rail: str(v) for rail, v in sorted(by_rail.items())},
            "by_day": [{"day": day, "revenue": str(v)} for day, v in sorted(by_day.items())],
            "transactions": shown}


def withdrawals(book: Book, address: str) -> dict[str, str]:
    """What the markets this node follows credited ``address`` (an owner, a prover) and it has not withdrawn yet
    (``withdrawable``), and what they paid it (``withdrawn``), in the book (atomic units as decimal strings)."""
    suffix = ":" + address.lower()
    withdrawable = sum(b.available for name, b in book.accounts(Accounts.WITHDRAWABLE).items()
                       if name.endswith(suffix))
    wallet = Accounts.wallet(address)
    paid = book.transfers(accounts=[wallet], kinds=("withdrawal",), limit=1_000_000)
    legs = book.postings(t.id for t in paid)
    withdrawn = sum(a for t in paid for acc, a in legs.get(t.id, []) if acc == wallet and a > 0)
    return {"withdrawable": str(withdrawable), "withdrawn": str(withdrawn)}
