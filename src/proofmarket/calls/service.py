"""Creating jobs: idempotency keys and payment nonces are enforced here (and by the table's unique columns).

* The same Idempotency-Key with the same request returns the job it created first (whatever its state);
  with a different request it is refused (``idempotency_conflict``). Keys are scoped by payer: a paid
  job's key is found again only by the same payer (``scoped_key``), never by an unpaid or other caller.
* A payment nonce pays for one job: a second job with it is refused (``payment_replayed``).
* A payer's balance is reserved across its unsettled jobs: ``cover(ticket, held)`` is asked, under a lock,
  with what the payer's other unsettled jobs hold, before the job is stored and queued.
* Every call is a row with its proof system and its payment rail, run by the engine. A streamed generation's call is
  held first (``hold_call``: its payment covered like any queued call's), then queued with its request listening
  to its run's events (``start_call``); the runner's one settle step settles it: settled, ``settling`` (202:
  followed on chain, the answer delivered once mined, or failed with nothing charged) or failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from proofmarket.calls.cache import ProofCache
from proofmarket.calls.queue import CallQueue
from proofmarket.core.errors import DuplicateJob, IdempotencyConflict, PaymentReplayed, ProofMarketError, UnknownJob
from proofmarket.db import CallKind, CallRepo, CallRow, CallStatus, NewCall
from proofmarket.db.leases import LeaseRepo
from proofmarket.payments.tickets import Settlement, Ticket
from proofmarket.systems.port import Events, Execution
from proofmarket.systems.registry import DEFAULT_SYSTEM

if TYPE_CHECKING:
    from proofmarket.calls.runner import CallRunner


log = logging.getLogger(__name__)


def request_hash(kind: CallKind, model_id: str | None, doc: Any) -> str:
    """What makes two requests "the same" for an idempotency key."""
    text = json.dumps({"kind": kind.value, "model_id": model_id, "doc": doc}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def scoped_key(key: str | None, payer: str | None) -> str | None:
    """The stored Idempotency-Key: the caller's key within its payer's scope (fits the 255-char column)."""
    if key is None or not payer:
        return key
    scoped = f"{payer.lower()}:{key}"
    return scoped if len(scoped) <= 255 else f"{payer.lower()}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


Cover = Callable[[Ticket, int], None]


class CallService:
    def __init__(self, repo: CallRepo, queue: CallQueue, cache: ProofCache | None = None) -> None:
        self.repo, self.queue, self.cache = repo, queue, cache
        self._leases = LeaseRepo(repo.db)  # a payer's calls check and take its balance one at a time, on every node

    def existing(self, key: str | None, request: str, payer: str | None = None) -> CallRow | None:
        """The job an earlier request with this idempotency key (and payer) created, if any (same request or
        refused)."""
        key = scoped_key(key, payer)
        if key is None:
            return None
        job = self.repo.by_idempotency_key(key)
        if job is not None and job.request_hash != request:
            raise IdempotencyConflict("this Idempotency-Key was already used for a different request",
                                      job_id=job.id)
        return job

    def submit_prove(self, model_id: str, inputs: Any, *, key: str | None = None,
                     ticket: Ticket | None = None, cover: Cover | None = None,
                     salt: list[int] | None = None, system: str | None = None,
                     rail: str | None = None, batch: bool = False, client: str = "") -> tuple[CallRow, bool]:
        """Store and queue a prove job; returns (job, created). An existing job for ``key`` comes back as is.
        ``batch=True``: the caller allowed its call to share a proof with its own other calls that allowed it (else
        it is proven alone); the caller is the payer, else ``client`` (its address): a shared proof's instances
        show every slot's input and output, so calls of different callers never share one.

        ``cover(ticket, held)`` raises when the payer's balance minus ``held`` (what its other unsettled
        jobs hold) does not cover this ticket; nothing is stored then."""
        digest = request_hash(CallKind.PROVE, model_id, inputs if salt is None else {"inputs": inputs, "salt": salt})
        payer = ticket.payer if ticket else None
        doc: dict[str, Any] = {"inputs": inputs} if salt is None else {"inputs": inputs, "salt": salt}
        if batch:
            doc["batch"] = True
            if payer or client:  # else (no one to tell apart) the call is proven alone
                doc["caller"] = f"payer:{payer.lower()}" if payer else f"client:{client}"
        new = NewCall(CallKind.PROVE, doc, digest, model_id=model_id,
                      idempotency_key=scoped_key(key, payer),
                      payment_nonce=ticket.nonce if ticket else None, payment=ticket.to_json() if ticket else None,
                      system=system or DEFAULT_SYSTEM, rail=rail or ("x402" if ticket else "free"))
        if ticket is None or cover is None or not payer:
            return self._submit(new)
        with self._leases.funds(payer):  # one payer's calls take turns; other payers are not held up
            found = self._found(new)
            if found is not None:
                return found, False
            cover(ticket, self.repo.held_by(payer, besides=ticket.nonce))
            stored = self._create(new, looked=True)
        # queued once the lock is released: the worker's first write (the call starts) does not meet its release
        return self._queued(new, *stored)

    def submit_request(self, model_id: str, request: dict[str, Any], *, key: str, ticket: Ticket, system: str,
                       rail: str, answered: Execution | None = None) -> CallRow:
        """Queue a call of a request paid on chain (an escrow or court request: nothing to cover, its price is
        escrowed there) whose request document is the system's own (an attested generation's prompt and decoding);
        the call found under ``key`` comes back as it is. ``answered``: the answer made before (a request answered
        again with its stored bundle): the call is proved with it, and the engine only settles it."""
        new = NewCall(CallKind.PROVE, request, request_hash(CallKind.PROVE, model_id, request), model_id=model_id,
                      idempotency_key=key, payment_nonce=ticket.nonce, payment=ticket.to_json(), system=system,
                      rail=rail)
        job, created = self._create(new, looked=False)
        if not created:
            return job
        if answered is not None and self.repo.start(job.id) is not None:
            job = self.repo.proved(job.id, bundle_cid=answered.bundle_cid, result=dict(answered.result),
                                   final=False) or job
        self.queue.submit(new.kind, job.id, job)
        return job

    def hold_call(self, model_id: str, request: dict[str, Any], ticket: Ticket | None, cover: Cover | None,
                  *, system: str, rail: str) -> CallRow:
        """A call whose request waits for its events (a streamed generation), stored queued with its payment held
        (``cover`` is asked first, as for any queued call, with what the payer's other unsettled calls hold); the
        engine gets it from ``start_call``, once the request listens."""
        new = NewCall(CallKind.PROVE, request, request_hash(CallKind.PROVE, model_id, request), model_id=model_id,
                      payment_nonce=ticket.nonce if ticket else None, payment=ticket.to_json() if ticket else None,
                      system=system, rail=rail)
        payer = ticket.payer if ticket is not None and cover is not None else None
        with self._leases.funds(payer) if payer else nullcontext():
            if ticket is not None and payer and cover is not None:
                cover(ticket, self.repo.held_by(payer, besides=ticket.nonce))
            try:
                job = self.repo.create(new)
            except DuplicateJob:
                raise PaymentReplayed("this payment was already used for another request") from None
            log.info("call %s created (%s, model %s)", job.id, job.kind, job.model_id or "-")
        return job

    def start_call(self, job: CallRow, events: Events) -> threading.Event:
        """Queue a held call with ``events`` listening to its run (a generation's tokens, from whichever worker runs
        it); the event returned is set once its run's last event was handed over."""
        done = self.queue.listen(job.id, events)
        self.queue.submit(CallKind(job.kind), job.id, job)
        return done

    def fail_call(self, job_id: str, code: str, message: str) -> None:
        """The call failed before its answer was ready: the job fails and its payment is released."""
        if self.repo.failed(job_id, code, message):
            self._runner().release(self.get(job_id))

    def fail_call_on(self, job_id: str, exc: BaseException) -> None:
        """``fail_call`` for an exception a call's run raised: its code and sentence, or ``internal_error`` (the
        detail stays in the log). Never raises: a call already settled, settling or failed is left as it is."""
        code, message = ((exc.code, exc.message) if isinstance(exc, ProofMarketError)
                         else ("internal_error", "the call failed; the node's log has the details"))
        try:
            self.fail_call(job_id, code, message)
        except Exception:
            log.exception("could not fail call %s and release its payment", job_id)

    def _runner(self) -> CallRunner:
        runner: CallRunner | None = getattr(self.queue, "runner", None)  # both queues settle with their runner
        if runner is None:
            raise RuntimeError("this job queue has no runner to settle attested calls with")
        return runner

    def submit_compile(self, spec: dict[str, Any], request: str, *, key: str | None = None) -> tuple[CallRow, bool]:
        return self._submit(NewCall(CallKind.COMPILE, spec, request, idempotency_key=key))

    def get(self, job_id: str) -> CallRow:
        job = self.repo.get(job_id)
        if job is None:
            raise UnknownJob(f"there is no job {job_id} on this node", job_id=job_id)
        return job

    def _found(self, new: NewCall) -> CallRow | None:
        """The job stored under ``new``'s (already scoped) key, if any."""
        return self.existing(new.idempotency_key, new.request_hash)

    def _submit(self, new: NewCall) -> tuple[CallRow, bool]:
        """Store and queue ``new``; an existing job for its key comes back as is."""
        return self._queued(new, *self._create(new, looked=False))

    def _create(self, new: NewCall, *, looked: bool) -> tuple[CallRow, bool]:
        """Store ``new`` (``looked``: its key was just looked up under the payer's funds lock): (job, created)."""
        found = None if looked else self._found(new)
        if found is not None:
            return found, False
        try:
            created = self.repo.create(new)
            log.info("call %s created (%s, model %s)", created.id, created.kind, created.model_id or "-")  # the
            return created, True  # request's id beside the call's: followed from its request to its proof
        except DuplicateJob:
            found = self._found(new)  # a concurrent retry won the race
            if found is not None:
                return found, False
            raise PaymentReplayed("this payment was already used for another request") from None

    def _queued(self, new: NewCall, job: CallRow, created: bool) -> tuple[CallRow, bool]:
        """Hand a job just stored to the queue (a call the proof cache answers is done, or settles, without a
        worker); one found stored already comes back as it is."""
        if not created:
            return job, False
        if self.cache is not None and new.kind == CallKind.PROVE and self.cache.answer(job):
            found = self.repo.get(job.id)  # proved from the cache: a free job is done, a paid one settles
            assert found is not None
            if not found.is_final:
                self.queue.submit(new.kind, job.id, found)
            return found, True
        self.queue.submit(new.kind, job.id, job)
        return job, True


def call_answer(job: CallRow, bundle: dict[str, Any]) -> dict[str, Any] | None:
    """A delivered call's answer when its system answers more than an output (text, tokens, usage): the system's
    fields, the bundle (with payment and receipt when paid) and the payment. None until it may be shown."""
    extras = (job.result or {}).get("answer")
    if extras is None or not job.result_visible or job.status == CallStatus.FAILED:
        return None
    settlement = Settlement.from_json(job.settlement)
    if settlement.receipt is not None:
        payment = {k: v for k, v in (settlement.payment or {}).items() if k != "paid_bundle_cid"}
        bundle = {**bundle, "payment": payment, "receipt": settlement.receipt}
    return {**extras, "job_id": job.id, "status": job.status, "model_id": job.model_id, "bundle_cid": job.bundle_cid,
            "bundle": bundle, "payment": settlement.payment, "receipt": settlement.receipt}
