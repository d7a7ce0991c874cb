"""Where a reader of the chain resumes: one row per name in ``watcher_cursors`` (the first block not yet fully
processed, and the hash block ``next_block - 1`` had when it was read, for a reorg check). The escrow and court
watchers and the book's chain tail (``payments/chain_tail.py``) keep theirs here."""

from __future__ import annotations

from proofmarket.db.engine import Database
from proofmarket.db.tables import WatcherCursorRow, utcnow


class Cursors:
    def __init__(self, db: Database) -> None:
        self.db = db

    def at(self, name: str) -> tuple[int | None, str | None]:
        """(the first block not yet fully processed, the hash block ``next_block - 1`` had when it was read)."""
        with self.db.session() as s:
            row = s.get(WatcherCursorRow, name)
            return (None, None) if row is None else (row.next_block, row.block_hash)

    def save(self, name: str, next_block: int, block_hash: str | None = None) -> None:
        with self.db.session() as s:
            row = s.get(WatcherCursorRow, name)
            if row is None:
                s.add(WatcherCursorRow(name=name, next_block=next_block, block_hash=block_hash, updated_at=utcnow()))
            else:
                row.next_block, row.block_hash, row.updated_at = next_block, block_hash, utcnow()
