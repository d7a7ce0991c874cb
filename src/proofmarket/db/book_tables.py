"""Tables of the book (``db/book.py``): one double-entry ledger for every rail.

    book_transfers  id | ref (unique: one movement of value, once) | kind | rail | phase (single | pending | post |
                    void) | pending_ref (the pending transfer a post or a void closes) | model_id | payer | tx_hash
                    | memo | created_at
    book_postings   id | transfer_id | account | amount (signed, atomic units; a transfer's postings sum to zero)
    book_accounts   name | posted (what posted transfers left in it) | pending_debits (held by open pending
                    transfers) | pending_credits | updated_at

Append-only: a transfer is never changed or deleted; a pending transfer is closed by a ``post`` or a ``void``
transfer naming it. ``book_accounts`` is the running balance of the postings, updated in the same database
transaction (its row is the lock that keeps an account from going below zero under concurrent writers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from proofmarket.db.tables import AtomicAmount, Base, JsonDoc, UtcDateTime, utcnow


class TransferRow(Base):
    __tablename__ = "book_transfers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    rail: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(8))
    pending_ref: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    model_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    payer: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    tx_hash: Mapped[str | None] = mapped_column(String(80), nullable=True)
    memo: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PostingRow(Base):
    __tablename__ = "book_postings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("book_transfers.id"), index=True)
    account: Mapped[str] = mapped_column(String(160), index=True)
    amount: Mapped[int] = mapped_column(AtomicAmount)


class AccountRow(Base):
    __tablename__ = "book_accounts"

    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    posted: Mapped[int] = mapped_column(AtomicAmount, default=0)
    pending_debits: Mapped[int] = mapped_column(AtomicAmount, default=0)
    pending_credits: Mapped[int] = mapped_column(AtomicAmount, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
