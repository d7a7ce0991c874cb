"""Finding transfers in the book (``db/book.py``) by what names them: a transaction, a prefix of their ref."""

from __future__ import annotations

from sqlalchemy import func, select

from proofmarket.db.book import Book
from proofmarket.db.book_tables import TransferRow


def with_tx(book: Book, tx_hash: str) -> list[TransferRow]:
    """Transfers that name ``tx_hash``: posted with it, or pending with it among their sent transactions."""
    tx = tx_hash.lower()
    with book.db.session() as s:
        rows = list(s.scalars(select(TransferRow).where(func.lower(TransferRow.tx_hash) == tx)))
    noted = [t for t in book.open_pending(limit=100_000)
             if tx in {str(h).lower() for h in (t.memo or {}).get("sent_txs") or []}]
    return rows + [t for t in noted if t.id not in {r.id for r in rows}]


def named(book: Book, prefix: str, limit: int = 100) -> list[TransferRow]:
    """Transfers whose ref starts with ``prefix`` (a payee's payouts: ``payout:<address>:``), newest first."""
    with book.db.session() as s:
        query = select(TransferRow).where(TransferRow.ref.startswith(prefix, autoescape=True))
        return list(s.scalars(query.order_by(TransferRow.id.desc()).limit(limit)))
