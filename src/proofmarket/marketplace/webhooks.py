"""Webhooks: a caller's callback URL for an async call, and owners' subscriptions to their models' events.

    sources     a call's callback (``?callback_url=`` on infer): its result once the call is final, to the caller
                subscriptions (``/v1/webhooks``, signed by the owner): ``call`` (a call of the owner's model ended:
                status, rail, amount, error code; never its input or output), ``payout`` (a paid call captured:
                amount and rail), ``challenge`` (a court request on the owner's model was challenged)
    delivery    a row per (source, event) (unique: one delivery per thing reported), POSTed by the node's
                dispatcher with the delivery id, event, time and the node's EIP-191 signature of
                ``proofmarket-webhook:{delivery id}:{time}:{sha256 of the body}`` (a subscription's, also the Standard
                Webhooks way with its ``whsec_`` secret: ``webhook-id/-timestamp/-signature``); a 2xx ends it;
                anything else is retried with backoff (1 s, 2 s, 4 s ... at most 10 min) until
                PROOFMARKET_WEBHOOK_MAX_ATTEMPTS, then ``failed``. A sender that dies mid-send leaves the
                delivery to be claimed again after its lease: the receiver deduplicates on the delivery id.
    targets     http(s) only; loopback, private and link-local addresses are refused (each delivery resolves the
                host again) unless PROOFMARKET_WEBHOOK_PRIVATE_TARGETS allows them (auto: on a development chain)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from proofmarket.core.background import Service
from proofmarket.core.errors import Forbidden, UsageError
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, CallRow, CallStatus, Database, ModelRow
from proofmarket.db.owner_tables import WebhookDeliveryRow, WebhookSubscriptionRow
from proofmarket.db.tables import utcnow
from proofmarket.marketplace.webhook_targets import WebhookTargetRefused, check_target, pinned, private_allowed

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from proofmarket.payments.tickets import ProofOutcome, Settlement

log = logging.getLogger("proofmarket.webhooks")

EVENTS = ("call", "payout", "challenge")
MAX_SUBSCRIPTIONS = 10
LEASE_S = 60.0
PAYOUTS_KEPT = 1024  # settled calls whose payout targets wait for their capture
MAX_BACKOFF_S = 600.0
HEADERS = ("X-Proofmarket-Delivery", "X-Proofmarket-Event", "X-Proofmarket-Timestamp", "X-Proofmarket-Signature",
           "X-Proofmarket-Signer")


def signed_message(delivery_id: str, timestamp: int, body: bytes) -> str:
    return f"proofmarket-webhook:{delivery_id}:{timestamp}:{hashlib.sha256(body).hexdigest()}"


class Webhooks:
    """The deliveries' table and the events that fill it (called from the call lifecycle's hooks)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.allow_private = private_allowed(settings)
        # a settled call's payout targets, read with its call event (``job_final``) for its capture's event
        # (``captured``, next on the same thread): one read of the owner's subscriptions per call, not two
        self._payouts: dict[str, list[tuple[str, str]]] = {}
        self._payouts_lock = threading.Lock()

    # --- subscriptions (owners) -----------------------------------------------------------------------
    def subscribe(self, owner: str, url: str, events: list[str], model_id: str | None) -> WebhookSubscriptionRow:
        unknown = sorted(set(events) - set(EVENTS))
        if not events or unknown:
            raise UsageError(f"events must be some of {', '.join(EVENTS)}" + (f", not {unknown}" if unknown else ""))
        if model_id is not None:
            with self.db.session() as s:
                row = s.get(ModelRow, model_id)
                if row is None or (row.owner or "").lower() != owner:
                    raise Forbidden(f"{owner} does not own model {model_id} on this node", model_id=model_id)
        check_target(url, self.allow_private)
        with self.db.session() as s:
            live = s.scalars(select(WebhookSubscriptionRow).where(WebhookSubscriptionRow.owner == owner,
                                                                  WebhookSubscriptionRow.revoked_at.is_(None))).all()
            if len(live) >= MAX_SUBSCRIPTIONS:
                raise Forbidden(f"{owner} has {len(live)} webhooks here, the most an owner may have")
            sub = WebhookSubscriptionRow(id=secrets.token_hex(8), owner=owner, url=url, model_id=model_id,
                                         events=sorted(set(events)), created_at=utcnow(),
                                         secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
            s.add(sub)
            return sub

    def subscriptions(self, owner: str) -> list[WebhookSubscriptionRow]:
        with self.db.session() as s:
            return list(s.scalars(select(WebhookSubscriptionRow).where(WebhookSubscriptionRow.owner == owner)
                                  .order_by(WebhookSubscriptionRow.created_at)))

    def revoke(self, owner: str, sub_id: str) -> bool:
        with self.db.session() as s:
            res = s.execute(update(WebhookSubscriptionRow).where(
                WebhookSubscriptionRow.id == sub_id, WebhookSubscriptionRow.owner == owner,
                WebhookSubscriptionRow.revoked_at.is_(None)).values(revoked_at=utcnow()))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def deliveries(self, owner: str, limit: int = 50) -> list[WebhookDeliveryRow]:
        """The recent deliveries of the owner's subscriptions."""
        subs = [sub.id for sub in self.subscriptions(owner)]
        if not subs:
            return []
        with self.db.session() as s:
            return list(s.scalars(select(WebhookDeliveryRow).where(
                or_(*(WebhookDeliveryRow.source.like(f"sub:{sub}:%") for sub in subs)))
                .order_by(WebhookDeliveryRow.created_at.desc()).limit(limit)))

    # --- events -----------------------------------------------------------------------------------------
    def callback(self, job: CallRow, url: str) -> None:
        """The caller's callback for this call: delivered once the call is final (now, if it is already)."""
        check_target(url, self.allow_private, resolve=False)  # resolved at delivery time (and again each retry)
        self._add(f"callback:{job.id}", url, "call.result", None, job.id, status="waiting")
        if job.is_final:
            self.job_final(job)

    def job_final(self, job: CallRow) -> None:
        """A call ended (the runner's record step): its callback gets the result; the owner's ``call`` event."""
        if job.kind != CallKind.PROVE:
            return
        with self.db.session() as s:  # one transaction: this runs once per call, on its way to the answer
            waiting = s.scalars(select(WebhookDeliveryRow).where(WebhookDeliveryRow.job_id == job.id,
                                                                 WebhookDeliveryRow.status == "waiting")).all()
            subs = _owner_subscriptions(s, job.model_id)
            targets = _listening(subs, job.model_id, "call")
            if job.status == CallStatus.SETTLED:  # its capture's event comes next (``captured``)
                self._keep_payouts(job.id, _listening(subs, job.model_id, "payout"))
            if not waiting and not targets:  # nobody listens: the common case costs these two reads
                return
            fresh = s.get(CallRow, job.id) or job
            for row in waiting:
                row.payload, row.status, row.next_at = result_payload(fresh), "pending", utcnow()
        self._deliver(targets, "call", f"call:{job.id}", job.id, call_event(fresh))

    def captured(self, job: CallRow, settlement: Settlement, outcome: ProofOutcome) -> None:
        """A paid call was captured (an after-capture hook): the owner's ``payout`` event."""
        payment = settlement.payment or {}
        with self._payouts_lock:
            kept = self._payouts.pop(job.id, None)
        self._to_owner(job.model_id, "payout", f"payout:{job.id}", job.id, {
            "event": "payout", "job_id": job.id, "model_id": job.model_id, "rail": job.rail,
            "amount_atomic": str(payment.get("amount") or "0"), "transaction": payment.get("transaction"),
            "scheme": payment.get("scheme"), "network": payment.get("network")}, targets=kept)

    def _keep_payouts(self, job_id: str, targets: list[tuple[str, str]]) -> None:
        with self._payouts_lock:
            if len(self._payouts) >= PAYOUTS_KEPT:  # captures that never came (a hook that failed): the oldest go
                del self._payouts[next(iter(self._payouts))]
            self._payouts[job_id] = targets

    def court_status(self, model_id: str, request_id: int, status: str) -> None:
        """A court request on the owner's model changed status: ``challenge`` when it was challenged."""
        if status not in ("challenged", "withheld"):
            return
        self._to_owner(model_id, "challenge", f"challenge:{request_id}:{status}", None, {
            "event": "challenge", "model_id": model_id, "request_id": request_id, "status": status})

    def _to_owner(self, model_id: str | None, event: str, key: str, job_id: str | None,
                  payload: dict[str, Any], targets: list[tuple[str, str]] | None = None) -> None:
        """``event`` to the owner's subscriptions to it (``targets``: read with the call's event already)."""
        if targets is None:
            with self.db.session() as s:
                targets = _listening(_owner_subscriptions(s, model_id), model_id, event)
        self._deliver(targets, event, key, job_id, payload)

    def _deliver(self, targets: list[tuple[str, str]], event: str, key: str, job_id: str | None,
                 payload: dict[str, Any]) -> None:
        """A delivery of ``event`` to each (subscription, URL), once per subscription and ``key``."""
        for sub_id, url in targets:
            self._add(f"sub:{sub_id}:{key}", url, event, payload, job_id)

    def _add(self, source: str, url: str, event: str, payload: dict[str, Any] | None, job_id: str | None,
             status: str = "pending") -> None:
        try:
            with self.db.session() as s:
                s.add(WebhookDeliveryRow(id=secrets.token_hex(12), source=source[:200], url=url, event=event,
                                         job_id=job_id, payload=payload, status=status, attempts=0,
                                         next_at=utcnow(), created_at=utcnow()))
        except IntegrityError:  # reported already (a second hook call, another node): once per source
            pass

    def secret_of(self, delivery: WebhookDeliveryRow) -> str | None:
        """The Standard Webhooks secret a delivery is signed with: its subscription's (a call's callback has none)."""
        if not delivery.source.startswith("sub:"):
            return None
        with self.db.session() as s:
            sub = s.get(WebhookSubscriptionRow, delivery.source.split(":")[1])
            return sub.secret if sub is not None else None

    # --- the dispatcher's side ---------------------------------------------------------------------------
    def claim_due(self, limit: int = 20) -> list[WebhookDeliveryRow]:
        """Deliveries due now, leased to this sender (a conditional update each: one sender per delivery)."""
        now = utcnow()
        with self.db.session() as s:
            due = s.scalars(select(WebhookDeliveryRow.id).where(or_(
                (WebhookDeliveryRow.status == "pending") & (WebhookDeliveryRow.next_at <= now),
                (WebhookDeliveryRow.status == "sending") & (WebhookDeliveryRow.claimed_until < now)))
                .order_by(WebhookDeliveryRow.next_at).limit(limit)).all()
        claimed = []
        for delivery_id in due:
            with self.db.session() as s:
                res = s.execute(update(WebhookDeliveryRow).where(
                    WebhookDeliveryRow.id == delivery_id,
                    or_(WebhookDeliveryRow.status == "pending",
                        (WebhookDeliveryRow.status == "sending") & (WebhookDeliveryRow.claimed_until < now)))
                    .values(status="sending", claimed_until=now + timedelta(seconds=LEASE_S),
                            attempts=WebhookDeliveryRow.attempts + 1))
                if res.rowcount:  # type: ignore[attr-defined]
                    row = s.get(WebhookDeliveryRow, delivery_id)
                    if row is not None:
                        s.expunge(row)
                        claimed.append(row)
        return claimed

    def finish(self, delivery: WebhookDeliveryRow, error: str | None) -> None:
        with self.db.session() as s:
            row = s.get(WebhookDeliveryRow, delivery.id)
            if row is None or row.status != "sending":
                return
            if error is None:
                row.status, row.delivered_at, row.last_error, row.claimed_until = "delivered", utcnow(), None, None
            elif row.attempts >= self.settings.owners.webhook_max_attempts:
                row.status, row.last_error, row.claimed_until = "failed", error[:1000], None
            else:
                wait = min(MAX_BACKOFF_S, 2.0 ** (row.attempts - 1))
                row.status, row.last_error, row.claimed_until = "pending", error[:1000], None
                row.next_at = utcnow() + timedelta(seconds=wait)


def result_payload(job: CallRow) -> dict[str, Any]:
    """What a call's callback carries: what ``GET /v1/jobs/{id}`` shows its token holder."""
    result = dict(job.result or {}) if job.result_visible else {}
    settlement = job.settlement or {}
    doc: dict[str, Any] = {"event": "call.result", "job_id": job.id, "model_id": job.model_id, "status": job.status,
                           "rail": job.rail}
    if job.status == CallStatus.FAILED:
        doc["error"] = {"code": job.error_code, "message": job.error_message}
    else:
        doc["result"] = {"output": result.get("output"), "bundle_cid": job.bundle_cid, "salt": result.get("salt"),
                         "answer": result.get("answer"), "payment": settlement.get("payment"),
                         "receipt": settlement.get("receipt")}
    return doc


def call_event(job: CallRow) -> dict[str, Any]:
    """What an owner's ``call`` event carries: the call's fate, never its input or output."""
    amount = ((job.settlement or {}).get("payment") or {}).get("amount") if job.status == CallStatus.SETTLED else None
    return {"event": "call", "job_id": job.id, "model_id": job.model_id, "status": job.status, "rail": job.rail,
            "amount_atomic": None if amount is None else str(amount), "error_code": job.error_code,
            "created_at": job.created_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}


class Dispatcher(Service):
    """The node's sender: claims due deliveries, POSTs them signed, records the answer (a pass every ``poll_s``)."""

    name = "webhooks"

    def __init__(self, hooks: Webhooks, signer: LocalAccount, poll_s: float = 0.5,
                 post: Callable[..., httpx.Response] | None = None) -> None:
        super().__init__(poll_s, max_backoff_s=10.0)  # a database back after an outage: deliveries resume soon
        self.hooks, self.signer, self.poll_s = hooks, signer, poll_s
        self._http = self._client()
        self._post = post or (lambda url, **kwargs: self._http.post(url, **kwargs))

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.hooks.settings.owners.webhook_timeout_s, follow_redirects=False)

    def start(self) -> None:
        if self._http.is_closed:  # started again after a stop (an app whose lifespan runs again)
            self._http = self._client()
        super().start()

    def tick(self) -> int:
        return self.run_once()

    def close(self) -> None:
        super().close()
        self._http.close()

    def run_once(self) -> int:
        sent = 0
        for delivery in self.hooks.claim_due():
            self.hooks.finish(delivery, self.send(delivery))
            sent += 1
        return sent

    def headers(self, delivery_id: str, event: str, body: bytes, timestamp: int | None = None,
                secret: str | None = None) -> dict[str, str]:
        from eth_account.messages import encode_defunct

        stamp = int(time.time()) if timestamp is None else timestamp
        signature = self.signer.sign_message(encode_defunct(text=signed_message(delivery_id, stamp, body)))
        headers = dict(zip(HEADERS, (delivery_id, event, str(stamp), "0x" + bytes(signature.signature).hex(),
                                     self.signer.address), strict=True)) | {"Content-Type": "application/json"}
        if secret:
            from standardwebhooks import Webhook

            when = datetime.fromtimestamp(stamp, UTC)
            headers |= {"webhook-id": delivery_id, "webhook-timestamp": str(stamp),
                        "webhook-signature": Webhook(secret).sign(delivery_id, when, body.decode())}
        return headers

    def send(self, delivery: WebhookDeliveryRow) -> str | None:
        """One POST; None when the receiver took it (2xx), else what went wrong."""
        try:
            target, host, extensions = pinned(delivery.url, self.hooks.allow_private)
        except WebhookTargetRefused as exc:
            return exc.message
        body = json.dumps({"id": delivery.id, **(delivery.payload or {})}, separators=(",", ":")).encode()
        try:
            headers = self.headers(delivery.id, delivery.event, body, secret=self.hooks.secret_of(delivery))
            answer = self._post(target, content=body, extensions=extensions, headers=headers | host)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"


def _owner_subscriptions(s: Session, model_id: str | None) -> list[Any]:
    """The model owner's live subscriptions (id, url, events, model_id), for any event (one read)."""
    if model_id is None:
        return []
    return list(s.execute(select(WebhookSubscriptionRow.id, WebhookSubscriptionRow.url, WebhookSubscriptionRow.events,
                                 WebhookSubscriptionRow.model_id)
                          .join(ModelRow, func.lower(ModelRow.owner) == WebhookSubscriptionRow.owner)
                          .where(ModelRow.id == model_id, WebhookSubscriptionRow.revoked_at.is_(None))).all())


def _listening(subs: list[Any], model_id: str | None, event: str) -> list[tuple[str, str]]:
    """(subscription id, URL) of ``subs`` that take ``event`` for this model."""
    return [(sub.id, sub.url) for sub in subs if event in sub.events and sub.model_id in (None, model_id)]
