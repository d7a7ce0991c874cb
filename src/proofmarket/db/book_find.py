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


def known_txs(book: Book, tx_hashes: set[str]) -> set[str]:
    """Which of ``tx_hashes`` (lower case) the book names: posted with them, or pending with them among their sent
    transactions."""
    if not tx_hashes:
        return set()
    with book.db.session() as s:
        found = {str(h).lower() for h in s.scalars(select(TransferRow.tx_hash).where(
            func.lower(TransferRow.tx_hash).in_(sorted(tx_hashes))))}
    for pending in book.open_pending(limit=100_000):
        found |= {str(h).lower() for h in (pending.memo or {}).get("sent_txs") or []} & tx_hashes
    return found


def latest_tx(book: Book) -> str | None:
    """The transaction of the newest transfer that names one (where a book with no cursor of its own resumes)."""
    with book.db.session() as s:
        return s.scalars(select(TransferRow.tx_hash).where(TransferRow.tx_hash.is_not(None))
                         .order_by(TransferRow.id.desc()).limit(1)).first()
