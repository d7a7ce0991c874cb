"""Tables of owners' self-service and of webhooks.

    listing_submissions   nonce (the signed request's, unique: one upload per signature) | owner | job_id (the
                          compile job) | onnx_sha256 | size_bytes | created_at
    webhook_subscriptions id | owner | url | model_id (null: every model of the owner) | events (call, payout,
                          challenge) | created_at | revoked_at
    webhook_deliveries    id (the delivery id the receiver dedups on) | source (unique: what it reports, once) | url
                          | event | job_id | payload | status (waiting: its call is not final yet | pending |
                          sending | delivered | failed) | attempts | next_at | claimed_until | last_error
                          | created_at | delivered_at
    used_signatures       address | nonce | path (one request per address signature, on every node) | expires_at
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from proofmarket.db.tables import Base, JsonDoc, UtcDateTime, utcnow


class ListingSubmissionRow(Base):
    __tablename__ = "listing_submissions"

    nonce: Mapped[str] = mapped_column(String(66), primary_key=True)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32))
    onnx_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # the client address the upload came from (PROOFMARKET_TRUSTED_PROXIES' rule): un-vouched owners are bounded per
    # address, since a fresh wallet costs nothing
    client: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class WebhookSubscriptionRow(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    url: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str | None] = mapped_column(String(64))
    events: Mapped[list[str]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # the Standard Webhooks secret (whsec_...): shown once, when the subscription is made; never in view()
    secret: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "url": self.url, "model_id": self.model_id,
                "events": list(self.events), "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "event": self.event, "job_id": self.job_id, "status": self.status,
                "attempts": self.attempts, "last_error": self.last_error,
                "created_at": self.created_at.isoformat(),
                "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None}


class UsedSignatureRow(Base):
    __tablename__ = "used_signatures"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(300), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
