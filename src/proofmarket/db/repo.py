"""Repositories: the only code that writes SQL. Each method is one short transaction.

Status changes are conditional updates (``WHERE status IN (...)``), so two threads or two processes
never both move a job out of the same state: a payment is settled by whoever moved the job, once.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from proofmarket.core.errors import DuplicateJob, ModelOwnedByOther
from proofmarket.core.logs import REQUEST_ID
from proofmarket.db.book import Book, Transfer
from proofmarket.db.engine import Database
from proofmarket.db.tables import (
    CallKind,
    CallRow,
    CallStatus,
    ModelRow,
    ModelStatus,
    utcnow,
)

INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class NewCall:
    kind: CallKind
    input: dict[str, Any]
    request_hash: str
    model_id: str | None = None
    idempotency_key: str | None = None
    payment_nonce: str | None = None
    payment: dict[str, Any] | None = None
    system: str | None = None  # the proof system id (None: unknown, or a compile job)
    rail: str | None = None  # "free", "x402", "escrow", "court", ...


@dataclass
class Recovery:
    """What a restart did: ``running`` jobs failed as interrupted; these others go back on the queue."""

    interrupted: list[str] = field(default_factory=list)
    requeued: list[tuple[str, str]] = field(default_factory=list)  # (kind, job id), oldest first


class ModelRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, *, status: str | None = None) -> builtins.list[ModelRow]:
        """Every listing, or those in ``status`` (``active``: what the node sells)."""
        with self.db.session() as s:
            query = select(ModelRow).order_by(ModelRow.created_at, ModelRow.id)
            if status is not None:
                query = query.where(ModelRow.status == status)
            return list(s.scalars(query))

    def served(self) -> builtins.list[ModelRow]:
        return self.list(status=ModelStatus.ACTIVE)

    def get(self, model_id: str) -> ModelRow | None:
        with self.db.session() as s:
            return s.get(ModelRow, model_id)

    def by_owner(self, owner: str) -> builtins.list[ModelRow]:
        with self.db.session() as s:
            return list(s.scalars(select(ModelRow).where(func.lower(ModelRow.owner) == owner.lower())
                                  .order_by(ModelRow.created_at, ModelRow.id)))

    def upsert(self, model_id: str, *, name: str, price_atomic: int, owner: str | None = None,
               claim: bool = False, **listing: Any) -> ModelRow:
        """Insert or update a listing. ``claim``: an owner's own submission, refused (``ModelOwnedByOther``)
        when the id is another owner's listing. ``listing``: status, catalog, catalog_cid, supersedes,
        size_bytes, review_reason."""
        with self.db.session() as s:
            row = s.get(ModelRow, model_id)
            if row is None:
                row = ModelRow(id=model_id, created_at=utcnow(), status=ModelStatus.ACTIVE)
                s.add(row)
            elif claim and (row.owner or "").lower() != (owner or "").lower():
                raise ModelOwnedByOther(f"model {model_id} is listed here by another owner",
                                        model_id=model_id)
            row.name, row.price_atomic, row.owner = name, price_atomic, owner
            for key, value in listing.items():
                if key not in LISTING_FIELDS:
                    raise TypeError(f"unknown listing field {key}")
                setattr(row, key, value)
            return row

    def review(self, model_id: str, status: str, reason: str | None) -> ModelRow | None:
        with self.db.session() as s:
            row = s.get(ModelRow, model_id)
            if row is not None:
                row.status, row.review_reason = status, reason
            return row

    def versions(self, model_id: str) -> builtins.list[ModelRow]:
        """The line of versions ``model_id`` is on, oldest first: what it supersedes, back to the first, and
        what supersedes it, up to the latest (each step within one owner)."""
        with self.db.session() as s:
            rows = {r.id: r for r in s.scalars(select(ModelRow))}
        start = rows.get(model_id)
        if start is None:
            return []
        line, seen = [start], {start.id}
        while line[0].supersedes in rows and line[0].supersedes not in seen:  # back
            prev = rows[line[0].supersedes]
            if (prev.owner or "").lower() != (line[0].owner or "").lower():
                break
            line.insert(0, prev)
            seen.add(prev.id)
        while True:  # forward: the newest listing that names the last one
            nxt = sorted((r for r in rows.values() if r.supersedes == line[-1].id and r.id not in seen
                          and (r.owner or "").lower() == (line[-1].owner or "").lower()),
                         key=lambda r: (r.created_at, r.id))
            if not nxt:
                return line
            line.append(nxt[-1])
            seen.add(nxt[-1].id)


LISTING_FIELDS = frozenset({"status", "catalog", "catalog_cid", "supersedes", "size_bytes", "review_reason"})


class CallRepo:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.book = Book(db)

    def create(self, new: NewCall) -> CallRow:
        """Insert a queued job. Raises DuplicateJob when its idempotency key or payment nonce is taken."""
        row = CallRow(id=uuid.uuid4().hex, kind=new.kind.value, model_id=new.model_id, status=CallStatus.QUEUED.value,
                      input=new.input, request_hash=new.request_hash, idempotency_key=new.idempotency_key,
                      payment_nonce=new.payment_nonce, payment=new.payment, attempts=0, created_at=utcnow(),
                      payer=_payer_of(new.payment), system=new.system, rail=new.rail,
                      request_id=REQUEST_ID.get())  # the request being served (core.logs), None off a request
        try:
            with self.db.session() as s:
                s.add(row)
        except IntegrityError as exc:
            raise DuplicateJob("a job with this idempotency key or payment already exists") from exc
        return row

    def get(self, job_id: str) -> CallRow | None:
        with self.db.session() as s:
            return s.get(CallRow, job_id)

    def by_idempotency_key(self, key: str) -> CallRow | None:
        with self.db.session() as s:
            return s.scalars(select(CallRow).where(CallRow.idempotency_key == key)).first()

    def by_payment_nonce(self, nonce: str) -> CallRow | None:
        with self.db.session() as s:
            return s.scalars(select(CallRow).where(CallRow.payment_nonce == nonce)).first()

    def start(self, job_id: str) -> CallRow | None:
        """queued -> running (one more attempt). None when the job is not queued (someone else has it)."""
        with self.db.session() as s:  # the row as it is now, from the update itself (RETURNING: one statement)
            return s.scalars(update(CallRow).where(CallRow.id == job_id, CallRow.status == CallStatus.QUEUED.value)
                             .values(status=CallStatus.RUNNING.value, started_at=utcnow(),
                                     attempts=CallRow.attempts + 1).returning(CallRow)).first()

    def proved(self, job_id: str, *, bundle_cid: str | None, result: dict[str, Any], final: bool,
               model_id: str | None = None) -> CallRow | None:
        """running -> proved: the row as it is now (None: it was not running)."""
        values: dict[str, Any] = {"status": CallStatus.PROVED.value, "bundle_cid": bundle_cid, "result": result}
        if model_id is not None:
            values["model_id"] = model_id
        if final:
            values["finished_at"] = utcnow()
        return self._move(job_id, [CallStatus.RUNNING], returning=True, **values)

    def progress(self, job_id: str, step: str) -> None:
        """A running compile's current step (``result.progress`` until it is proved), for whoever polls the job."""
        with self.db.session() as s:
            s.execute(update(CallRow).where(CallRow.id == job_id, CallRow.status == CallStatus.RUNNING.value)
                      .values(result={"progress": step[:500]}))

    def settled(self, job_id: str, settlement: dict[str, Any], transfers: Sequence[Transfer] = ()) -> CallRow | None:
        """proved | settling -> settled, with the capture's ``transfers`` posted in the book in the same database
        transaction (once: a call already settled posts nothing). The settled row (None: it did not move)."""
        return self._move(job_id, [CallStatus.PROVED, CallStatus.SETTLING], transfers, returning=True,
                          status=CallStatus.SETTLED.value, settlement=settlement, finished_at=utcnow())

    def settling(self, job_id: str, pending: dict[str, Any]) -> bool:
        """proved -> settling: the settlement was sent (``pending``: what is known of it, e.g. its tx)."""
        return self._move(job_id, [CallStatus.PROVED], status=CallStatus.SETTLING.value, settlement=pending)

    def settling_ids(self) -> list[str]:
        """Jobs whose settlement is being followed on chain, oldest first (survives a restart)."""
        with self.db.session() as s:
            return list(s.scalars(select(CallRow.id).where(CallRow.status == CallStatus.SETTLING.value)
                                  .order_by(CallRow.created_at)))

    def settling_age(self, besides: Sequence[str] = ()) -> tuple[int, float]:
        """(calls settling, seconds since the oldest of them was created; 0 when none), but those of the rails
        ``besides`` (a court's calls settle after their challenge window, by design)."""
        with self.db.session() as s:
            count, oldest = s.execute(select(func.count(), func.min(CallRow.created_at)).where(
                CallRow.status == CallStatus.SETTLING.value,
                or_(CallRow.rail.is_(None), CallRow.rail.not_in(list(besides))))).one()
        if not count or oldest is None:
            return 0, 0.0
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=utcnow().tzinfo)
        return int(count), max(0.0, (utcnow() - oldest).total_seconds())

    def held_by(self, payer: str, *, besides: str | None = None, source: str | None = None) -> int:
        """Units held by ``payer``'s unsettled paid jobs (``besides``: a nonce left out; ``source``: its only)."""
        unsettled = [s.value for s in (CallStatus.QUEUED, CallStatus.RUNNING, CallStatus.PROVED, CallStatus.SETTLING)]
        with self.db.session() as s:  # this payer's rows by their indexed column (a row from before the column, 0004,
            # has none: read too, and told apart by its payment's payer), not every payer's unsettled calls
            rows = s.execute(select(CallRow.payment_nonce, CallRow.payment).where(
                CallRow.status.in_(unsettled), CallRow.payment.is_not(None),
                or_(CallRow.payer == payer_key(payer), CallRow.payer.is_(None))))
            return sum(int(doc.get("amount_atomic") or 0) for nonce, doc in rows
                       if nonce != besides and str(doc.get("payer") or "").lower() == payer.lower()
                       and (kind := (doc.get("doc") or {}).get("source")) not in ("free", "pass")  # hold nothing
                       and (source is None or kind == source))

    def failed(self, job_id: str, code: str, message: str, *, only: CallStatus | None = None) -> bool:
        """Fail a job that is not final (a proved job only while its payment awaits settlement); ``only``: only
        while it is in that status (the stuck-job sweep fails a RUNNING job, never one proved meanwhile: that one
        goes to the settler)."""
        active: ColumnElement[bool] = (
            CallRow.status.in_([CallStatus.QUEUED.value, CallStatus.RUNNING.value, CallStatus.SETTLING.value])
            | ((CallRow.status == CallStatus.PROVED.value) & CallRow.payment.is_not(None)))
        if only is not None:
            active = CallRow.status == only.value
        with self.db.session() as s:
            res = s.execute(update(CallRow).where(CallRow.id == job_id, active).values(
                status=CallStatus.FAILED.value, error_code=code, error_message=message[:4000], finished_at=utcnow()))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def recover(self) -> Recovery:
        """At start-up: fail what was running (``interrupted``), and list what is queued or awaits settlement."""
        recovery = Recovery()
        with self.db.session() as s:
            running = list(s.scalars(select(CallRow.id).where(CallRow.status == CallStatus.RUNNING.value)))
            s.execute(update(CallRow).where(CallRow.id.in_(running)).values(
                status=CallStatus.FAILED.value, error_code=INTERRUPTED, finished_at=utcnow(),
                error_message="the node stopped while this job was running; nothing was settled"))
            recovery.interrupted = running
            pending = s.execute(select(CallRow.kind, CallRow.id).where(
                (CallRow.status == CallStatus.QUEUED.value)
                | ((CallRow.status == CallStatus.PROVED.value) & CallRow.payment.is_not(None))
            ).order_by(CallRow.created_at))
            recovery.requeued = [(kind, job_id) for kind, job_id in pending]
        return recovery

    def active(self, *statuses: CallStatus) -> list[CallRow]:
        """Jobs in ``statuses``, oldest first (the distributed queue's janitor)."""
        with self.db.session() as s:
            return list(s.scalars(select(CallRow).where(CallRow.status.in_([st.value for st in statuses]))
                                  .order_by(CallRow.created_at)))

    def requeue(self, job_id: str) -> bool:
        """running -> queued: its worker is gone; the job is run again (its attempts are counted at start)."""
        return self._move(job_id, [CallStatus.RUNNING], status=CallStatus.QUEUED.value, started_at=None)

    def by_payer(self, payer: str, limit: int = 20, offset: int = 0) -> list[CallRow]:
        """A payer's jobs, newest first (a page of ``limit`` from ``offset``)."""
        with self.db.session() as s:
            return list(s.scalars(select(CallRow).where(CallRow.payer == payer_key(payer))
                                  .order_by(CallRow.created_at.desc(), CallRow.id).offset(offset).limit(limit)))

    def recent(self, limit: int = 20, *, system: str | None = None, rail: str | None = None) -> list[CallRow]:
        """The ``limit`` most recently created jobs, newest first (only those of ``system`` / ``rail`` if given)."""
        query = select(CallRow)
        if system is not None:
            query = query.where(CallRow.system == system)
        if rail is not None:
            query = query.where(CallRow.rail == rail)
        with self.db.session() as s:
            return list(s.scalars(query.order_by(CallRow.created_at.desc(), CallRow.id).limit(limit)))

    def counts(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(CallRow.status, func.count()).group_by(CallRow.status))
            return {status: n for status, n in rows}

    @overload
    def _move(self, job_id: str, from_: list[CallStatus], transfers: Sequence[Transfer] = (), *,
              returning: Literal[True], **values: Any) -> CallRow | None: ...

    @overload
    def _move(self, job_id: str, from_: list[CallStatus], transfers: Sequence[Transfer] = (), *,
              returning: Literal[False] = False, **values: Any) -> bool: ...

    def _move(self, job_id: str, from_: list[CallStatus], transfers: Sequence[Transfer] = (), *,
              returning: bool = False, **values: Any) -> CallRow | bool | None:
        """A conditional update of the row; ``transfers`` are posted in the book in the same database transaction
        (only when the row moved: once). ``returning``: the row as it is after the move (None: it did not move),
        from the update itself."""
        with self.db.write_session() if transfers else self.db.session() as s:
            moving = update(CallRow).where(CallRow.id == job_id, CallRow.status.in_([f.value for f in from_]))
            row: CallRow | None = None
            if returning:
                row = s.scalars(moving.values(**values).returning(CallRow)).first()
                moved = row is not None
            else:
                moved = bool(s.execute(moving.values(**values)).rowcount)  # type: ignore[attr-defined]
            if moved:
                for transfer in transfers:
                    self.book.post(transfer, session=s)
        return row if returning else moved


def payer_key(payer: str) -> str:
    """A payer as ``jobs.payer`` keeps it (lower case, at most 42 characters): what its queries compare with."""
    return payer.lower()[:42]


def _payer_of(payment: dict[str, Any] | None) -> str | None:
    payer = (payment or {}).get("payer")
    return payer_key(str(payer)) if payer else None
