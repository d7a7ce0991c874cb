"""Tables of the ``credits`` rail: API keys (stored hashed) and the credit ledger (append-only; a balance is its sum).

    api_keys        id | wallet | key_hash (unique) | models (scope; null = any) | cap_atomic | spent_atomic
                    | expires_at | revoked_at | created_at
    credit_ledger   id | wallet | kind (purchase | deposit | draw | refund | free | pass) | amount | ref (unique: a
                    payment, transaction or call pays once) | key_id | model_id | job_id | created_at
    credit_passes   id | wallet | model_id (null: any model) | calls_per_day | starts_at | ends_at | ref (the x402
                    payment that bought it, unique) | created_at
    free_quotas     model_id | calls_per_day (per funded payer wallet, per UTC day) | total_per_day (every payer
                    together: what the owner pays for) | set_by (the model's owner) | updated_at
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from proofmarket.db.tables import AtomicAmount, Base, JsonDoc, UtcDateTime, utcnow


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    wallet: Mapped[str] = mapped_column(String(42), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    models: Mapped[list[str] | None] = mapped_column(JsonDoc, nullable=True)
    cap_atomic: Mapped[int | None] = mapped_column(AtomicAmount, nullable=True)
    spent_atomic: Mapped[int] = mapped_column(AtomicAmount, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "wallet": self.wallet, "models": self.models,
                "cap_atomic": None if self.cap_atomic is None else str(self.cap_atomic),
                "spent_atomic": str(self.spent_atomic),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked": self.revoked_at is not None, "created_at": self.created_at.isoformat()}


class CreditEntryRow(Base):
    __tablename__ = "credit_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wallet: Mapped[str] = mapped_column(String(42), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(AtomicAmount)
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "amount": str(self.amount), "ref": self.ref, "key_id": self.key_id,
                "model_id": self.model_id, "job_id": self.job_id, "created_at": self.created_at.isoformat()}


class CreditPassRow(Base):
    __tablename__ = "credit_passes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wallet: Mapped[str] = mapped_column(String(42), index=True)
    model_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    calls_per_day: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "wallet": self.wallet, "model_id": self.model_id, "calls_per_day": self.calls_per_day,
                "starts_at": self.starts_at.isoformat(), "ends_at": self.ends_at.isoformat()}


class FreeQuotaRow(Base):
    __tablename__ = "free_quotas"

    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    calls_per_day: Mapped[int] = mapped_column(Integer)
    total_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    set_by: Mapped[str] = mapped_column(String(42))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# the rail's tables, as the port asks for them (``rail.tables``; the node's migrations hold them too)
# (a mapped class's __table__ is a Table)
TABLES: tuple[Table, ...] = tuple(cast(Table, row.__table__) for row in
                                  (ApiKeyRow, CreditEntryRow, CreditPassRow, FreeQuotaRow))
