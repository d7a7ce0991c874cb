"""The ``credits`` rail's rows (``db/credits_tables.py``): keys by hash, the ledger and its balances."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from proofmarket.db.credits_tables import ApiKeyRow, CreditEntryRow
from proofmarket.db.engine import Database
from proofmarket.db.tables import utcnow

CREDITS_IN = ("purchase", "deposit")
CREDITS_OUT = ("draw", "refund")


class CreditsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- keys ------------------------------------------------------------------------------------
    def add_key(self, key_id: str, wallet: str, key_hash: str, models: list[str] | None, cap_atomic: int | None,
                expires_at: datetime | None) -> ApiKeyRow:
        with self.db.session() as s:
            row = ApiKeyRow(id=key_id, wallet=wallet.lower(), key_hash=key_hash, models=models, cap_atomic=cap_atomic,
                            spent_atomic=0, expires_at=expires_at, created_at=utcnow())
            s.add(row)
            return row

    def key_by_hash(self, key_hash: str) -> ApiKeyRow | None:
        with self.db.session() as s:
            return s.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash)).first()

    def keys_of(self, wallet: str) -> list[ApiKeyRow]:
        with self.db.session() as s:
            return list(s.scalars(select(ApiKeyRow).where(ApiKeyRow.wallet == wallet.lower())
                                  .order_by(ApiKeyRow.created_at)))

    def revoke(self, key_id: str, wallet: str) -> bool:
        with self.db.session() as s:
            res = s.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.wallet == wallet.lower(),
                                                    ApiKeyRow.revoked_at.is_(None)).values(revoked_at=utcnow()))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    # --- the ledger ------------------------------------------------------------------------------
    def add(self, wallet: str, kind: str, amount: int, ref: str, *, key_id: str | None = None,
            model_id: str | None = None, job_id: str | None = None) -> tuple[CreditEntryRow, bool]:
        """Append an entry once per ``ref``: (the entry, True) or (the entry already there, False). A draw also adds
        to its key's spent total, in the same transaction."""
        try:
            with self.db.session() as s:
                row = CreditEntryRow(wallet=wallet.lower(), kind=kind, amount=amount, ref=ref, key_id=key_id,
                                     model_id=model_id, job_id=job_id, created_at=utcnow())
                s.add(row)
                if kind == "draw" and key_id is not None:
                    key = s.get(ApiKeyRow, key_id, with_for_update=True)
                    if key is not None:
                        key.spent_atomic = key.spent_atomic + amount
                s.flush()
                return row, True
        except IntegrityError:
            found = self.entry(ref)
            if found is None:
                raise
            return found, False

    def entry(self, ref: str) -> CreditEntryRow | None:
        with self.db.session() as s:
            return s.scalars(select(CreditEntryRow).where(CreditEntryRow.ref == ref)).first()

    def entries(self, wallet: str | None = None, limit: int = 1000) -> list[CreditEntryRow]:
        with self.db.session() as s:
            query = select(CreditEntryRow)
            if wallet is not None:
                query = query.where(CreditEntryRow.wallet == wallet.lower())
            return list(s.scalars(query.order_by(CreditEntryRow.id.desc()).limit(limit)))

    def balance(self, wallet: str) -> int:
        """What the wallet bought or deposited, minus what it drew and was refunded (exact: integer atomic units)."""
        with self.db.session() as s:
            rows = s.execute(select(CreditEntryRow.kind, CreditEntryRow.amount)
                             .where(CreditEntryRow.wallet == wallet.lower())).all()
        return sum(a if k in CREDITS_IN else -a for k, a in rows)
