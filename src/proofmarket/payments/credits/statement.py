"""A wallet's credit statement, read from the book (``db/book.py``): every transfer of its ``credits:`` account.

    purchase   x402 payments for credits (pending until mined, then posted; voided when never mined)
    deposit    plain USDC transfers to the node's account, claimed with their transaction
    draw       what a call took (its job), paid to the model's payee
    refund     credits sent back on chain (pending until mined; voided when never sent)
Each entry: its kind, ``direction`` (in or out), ``amount`` (atomic USDC), ``status`` (posted, pending: held, not
moved yet; void: nothing moved, with the reason), the transaction or the call (``job_id``) behind it, and for posted
entries ``balance_after``: the account's posted balance once it moved, so the entries add up to the balance.
A statement read with an API key lists the wallet's purchases, deposits and refunds and that key's own draws (not
another key's).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from proofmarket.db.book import Accounts, Book
from proofmarket.db.book_tables import TransferRow
from proofmarket.payments.credits.tables import CreditEntryRow

LIMIT = 200


def statement(book: Book, wallet: str, *, limit: int = LIMIT, key_id: str | None = None) -> dict[str, Any]:
    """{"posted", "held", "available", "entries" (newest first)} of ``wallet``'s credits."""
    account = Accounts.credits(wallet)
    balance = book.balance(account)
    rows = book.transfers(accounts=[account], limit=limit)
    legs = book.postings(r.id for r in rows)
    pending_refs = [r.ref for r in rows if r.phase == "pending"]
    with book.db.session() as s:
        closes = {c.pending_ref: c for c in s.scalars(select(TransferRow).where(
            TransferRow.pending_ref.in_(pending_refs)))} if pending_refs else {}
        journal = {f"credits:{e.ref}": e for e in s.scalars(select(CreditEntryRow).where(
            CreditEntryRow.ref.in_([r.ref.removeprefix("credits:") for r in rows])))} if rows else {}
    entries: list[dict[str, Any]] = []
    after = balance.posted
    for row in rows:  # newest first: each posted entry's balance_after, walking back from the balance now
        amount = sum(v for a, v in legs[row.id] if a == account)
        balance_after = after
        if row.phase != "pending":
            after -= amount
        source = journal.get(row.pending_ref or row.ref)
        if key_id is not None and source is not None and source.key_id not in (None, key_id):
            continue  # another key's draw
        entry: dict[str, Any] = {"ref": row.ref, "kind": row.kind, "direction": "in" if amount > 0 else "out",
                                 "amount": str(abs(amount)), "model_id": row.model_id, "tx_hash": row.tx_hash,
                                 "job_id": (row.memo or {}).get("job_id") or (source.job_id if source else None),
                                 "key_id": source.key_id if source else None,
                                 "created_at": row.created_at.isoformat()}
        if row.phase == "pending":
            closed = closes.get(row.ref)
            if closed is not None and closed.phase == "post":
                continue  # its post is an entry of its own
            entry["status"] = "void" if closed is not None else "pending"
            if closed is not None:
                entry["reason"] = (closed.memo or {}).get("reason")
        else:
            entry.update(status="posted", balance_after=str(balance_after))
        entries.append(entry)
    return {"posted": str(balance.posted), "held": str(balance.pending_debits), "available": str(balance.available),
            "entries": entries}
