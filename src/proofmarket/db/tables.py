"""The node's tables (SQLAlchemy 2): the models it serves and the jobs it runs.

Table rows are not API schemas: the API turns them into its own response models (``api/schemas.py``).

    models  id (model manifest CID) | name | price_atomic | owner | created_at | status (pending | active |
            rejected) | review_reason | catalog (description, task, tags, license, io, example) | catalog_cid
            | supersedes (the listing this one replaces, same owner) | size_bytes (of the ONNX file)
    jobs    id | kind | model_id | status | system | rail | input | request_hash | idempotency_key (unique)
            | payment_nonce (unique) | payment | payer | settlement | bundle_cid | result
            | error_code | error_message | created_at | started_at | finished_at | attempts

A job moves ``queued -> running -> proved [-> settling] [-> settled]``, or to ``failed`` from any but
``settled``. ``settled`` follows ``proved`` only when the job carries a payment; a free job ends ``proved``.
``settling``: the settlement transaction was sent (or its outcome is unknown); the node follows the
authorization's nonce on the token until it is used (settled) or expires unused (failed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class CallStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PROVED = "proved"
    SETTLING = "settling"  # paid and proved; the settlement was sent but is not confirmed: the hold stays
    SETTLED = "settled"
    FAILED = "failed"


class CallKind(StrEnum):
    PROVE = "prove"  # an inference: prove, then settle its payment if it has one
    COMPILE = "compile"  # an owner's upload: compile, then serve the model


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone: stored naive, read as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AtomicAmount(TypeDecorator[int]):
    """A token amount in atomic units (up to uint256), stored as decimal text: exact on every backend."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else str(int(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


# None is stored as SQL NULL (not JSON null), so "IS NULL" means "absent"
JsonDoc = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JsonDoc, datetime: UtcDateTime}


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the model manifest's CID
    name: Mapped[str] = mapped_column(String(200))
    price_atomic: Mapped[int] = mapped_column(AtomicAmount)  # USDC, 6 decimals
    owner: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    review_reason: Mapped[str | None] = mapped_column(Text)
    catalog: Mapped[dict[str, Any] | None]  # the catalogue entry (node/catalogue.py); None: name only
    catalog_cid: Mapped[str | None] = mapped_column(String(64))  # the entry in the store (registry metadata CID)
    supersedes: Mapped[str | None] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)


class ModelStatus(StrEnum):
    """A listing as the node's policy sees it: ``pending`` waits for the operator's review (not sold)."""

    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"


class CallRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_rail_status", "rail", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    # the proof system the call runs on (e.g. "ezkl-halo2-kzg-bn254", "proofmarket-attested-toploc-v1");
    # null for a compile job
    system: Mapped[str | None] = mapped_column(String(64))
    rail: Mapped[str | None] = mapped_column(String(32))  # what pays for it: "free", "x402", "escrow", "court", ...
    input: Mapped[dict[str, Any]]
    request_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_nonce: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment: Mapped[dict[str, Any] | None]  # the verified, not yet settled payment (the gate's JSON)
    payer: Mapped[str | None] = mapped_column(String(42), index=True)  # lower-case address of a paid job
    settlement: Mapped[dict[str, Any] | None]  # payment + receipt once settled
    bundle_cid: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None]  # prove: output, salt; compile: model id, logrows
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # the X-Request-ID of the HTTP request that made the call (core.logs): carried into the worker's log lines
    request_id: Mapped[str | None] = mapped_column(String(128))

    @property
    def awaits_settlement(self) -> bool:
        return self.status == CallStatus.PROVED and self.payment is not None

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to this job."""
        return self.status in (CallStatus.FAILED, CallStatus.SETTLED) or (
            self.status == CallStatus.PROVED and self.payment is None)

    @property
    def result_visible(self) -> bool:
        """The proof may be shown: free and proved, or paid and settled (never before the payment settles)."""
        return self.status == CallStatus.SETTLED or (self.status == CallStatus.PROVED and self.payment is None)


class EscrowStatus(StrEnum):
    """An on-chain escrow request as this node sees it."""

    SEEN = "seen"  # RequestCreated for a model this node serves; waiting for the consumer's input
    INPUT_RECEIVED = "input_received"  # the input (and salt) opens the on-chain commitment
    PROVING = "proving"  # claimed by the watcher: proving, then fulfil
    CONFIRMING = "confirming"  # our fulfil (or commitment) is mined: waiting for the chain's confirmations
    FULFILLED = "fulfilled"  # settled on chain (paid, or rejected: see settlement)
    FAILED = "failed"  # expired, settled by someone else, or the proof could not be made


class EscrowRequestRow(Base):
    """One row per (chain, market, request id): the unique key that keeps a request from being fulfilled twice."""

    __tablename__ = "escrow_requests"
    __table_args__ = (UniqueConstraint("chain_id", "market", "request_id", name="uq_escrow_requests_request"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    market: Mapped[str] = mapped_column(String(42))
    request_id: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    commitment: Mapped[str] = mapped_column(String(66))
    consumer: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(AtomicAmount)
    deadline: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    request_tx: Mapped[str | None] = mapped_column(String(66))
    inputs: Mapped[dict[str, Any] | None]  # {"inputs": <document>, "salt": [...] | null}
    bundle_cid: Mapped[str | None] = mapped_column(String(64))
    fulfil_tx: Mapped[str | None] = mapped_column(String(66))
    settlement: Mapped[dict[str, Any] | None]
    # a court request's state (AttestationCourt): committed, challenged, withheld, paid, slashed or refunded, and
    # when its challenge window closes; None for an escrow request (and a court one not committed yet)
    court_status: Mapped[str | None] = mapped_column(String(16))
    court_window_end: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_settlement(self) -> dict[str, Any] | None:
        """The settlement as readers see it: a court request's state (its columns) under ``court``, beside the
        court's records (the ERC-8004 validation, a contract's delivered result)."""
        if self.court_status is None:
            return self.settlement
        doc = dict(self.settlement or {})
        doc["court"] = {**(doc.get("court") or {}), "status": self.court_status, "window_end": self.court_window_end}
        return doc


class WatcherCursorRow(Base):
    """Where an event watcher resumes: the first block not yet fully processed."""

    __tablename__ = "watcher_cursors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # e.g. escrow:<chain id>:<market>
    next_block: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(66))  # of block next_block - 1, when read (reorg check)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProofCacheRow(Base):
    """A proof made for (model, input) under the public profile, reused for the same paid request."""

    __tablename__ = "proof_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(model id, canonical input)
    model_id: Mapped[str] = mapped_column(String(64))
    bundle_cid: Mapped[str] = mapped_column(String(64))
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class LeaseRow(Base):
    """A named lease held by one process until ``expires_at`` (e.g. the one escrow watcher of a market)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime]
