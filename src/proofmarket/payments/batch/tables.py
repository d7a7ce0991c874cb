"""Tables of the ``batch-settlement`` rail: payment channels as this node mirrors them, what each call charged on
them, and the sweeps that moved the charges on chain and shared them out per model.

    channels         channel_id | payer | state (the SDK's server ``Channel`` as JSON) | version | updated_at
    channel_charges  id | ticket (unique: one charge per voucher) | channel_id | job_id | model_id | pay_to
                     | amount | cumulative | receipt | sweep_id | created_at
    channel_sweeps   id | status | claim_txs | settle_tx | amount | allocations | error | created_at | finished_at

A channel's row changes only by compare-and-swap on ``version``: any node on the database serialises a channel's
updates through it (one call in flight per channel, no voucher charged twice).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from proofmarket.db.tables import AtomicAmount, Base, JsonDoc, UtcDateTime, utcnow


class ChannelRow(Base):
    __tablename__ = "channels"

    channel_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    payer: Mapped[str] = mapped_column(String(42), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # why the chain refused this channel's voucher (its claims dropped from batches; it is served no more)
    refused: Mapped[str | None] = mapped_column(String(300), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChannelChargeRow(Base):
    __tablename__ = "channel_charges"
    __table_args__ = (Index("ix_channel_charges_unswept", "sweep_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket: Mapped[str] = mapped_column(String(200), unique=True)
    channel_id: Mapped[str] = mapped_column(String(66))
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(String(128), index=True)
    pay_to: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(AtomicAmount)
    cumulative: Mapped[int] = mapped_column(AtomicAmount)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    sweep_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChannelSweepRow(Base):
    __tablename__ = "channel_sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(20), default="claimed")  # claimed -> settled -> distributed | failed
    claim_txs: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    settle_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)
    amount: Mapped[int] = mapped_column(AtomicAmount, default=0)
    allocations: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


# the rail's tables, as the port asks for them (``rail.tables``; the node's migrations hold them too)
# (a mapped class's __table__ is a Table)
TABLES: tuple[Table, ...] = tuple(cast(Table, row.__table__) for row in
                                  (ChannelRow, ChannelChargeRow, ChannelSweepRow))
