"""The proof cache's table access: proofs by (model, input) for public-profile models."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from proofmarket.db.engine import Database
from proofmarket.db.tables import ProofCacheRow, utcnow


class ProofCacheRepo:
    """Proofs by (model, input) for public-profile models: a bounded LRU shared by every node on the database."""

    def __init__(self, db: Database, max_entries: int) -> None:
        self.db, self.max_entries = db, max_entries

    def get(self, key: str) -> str | None:
        """The cached bundle CID for ``key`` (counted as used), or None."""
        with self.db.session() as s:
            row = s.get(ProofCacheRow, key)
            if row is None:
                return None
            row.hits, row.used_at = row.hits + 1, utcnow()
            return row.bundle_cid

    def put(self, key: str, model_id: str, bundle_cid: str) -> None:
        """Remember a proof; the least recently used entries beyond ``max_entries`` are forgotten."""
        try:
            with self.db.session() as s:
                s.add(ProofCacheRow(key=key, model_id=model_id, bundle_cid=bundle_cid, hits=0, created_at=utcnow(),
                                    used_at=utcnow()))
        except IntegrityError:  # another worker cached the same request first: keep theirs
            return
        with self.db.session() as s:
            extra = int(s.scalar(select(func.count()).select_from(ProofCacheRow)) or 0) - self.max_entries
            if extra > 0:
                oldest = list(s.scalars(select(ProofCacheRow.key).order_by(ProofCacheRow.used_at).limit(extra)))
                s.execute(delete(ProofCacheRow).where(ProofCacheRow.key.in_(oldest)))

    def forget(self, key: str) -> None:
        with self.db.session() as s:
            s.execute(delete(ProofCacheRow).where(ProofCacheRow.key == key))

    def count(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(ProofCacheRow)) or 0)
