"""Creating jobs: idempotency keys and payment nonces are enforced here (and by the table's unique columns).

* The same Idempotency-Key with the same request returns the job it created first (whatever its state);
  with a different request it is refused (``idempotency_conflict``). Keys are scoped by payer: a paid
  job's key is found again only by the same payer (``scoped_key``), never by an unpaid or other caller.
* A payment nonce pays for one job: a second job with it is refused (``payment_replayed``).
* A payer's balance is reserved across its unsettled jobs: ``cover(ticket, held)`` is asked, under a lock,
  with what the payer's other unsettled jobs hold, before the job is stored and queued.
* A paid attested call (generate, attested infer) is a job too, run by its route rather than the queue:
  ``open_call`` holds its payment like a queued job (the same cover), ``finish_call`` hands the answer to the
  runner's settle step: settled (``call_answer`` shows it), ``settling`` (202: the job is followed on chain
  and delivers the answer once mined, or fails with nothing charged) or failed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proofmarket.calls.cache import ProofCache
from proofmarket.calls.queue import JobQueue
from proofmarket.core.errors import IdempotencyConflict, PaymentReplayed, UnknownJob
from proofmarket.db import DuplicateJob, JobKind, JobRepo, JobRow, JobStatus, NewJob
from proofmarket.payments.tickets import PaymentTicket, Settlement

if TYPE_CHECKING:
    from proofmarket.calls.runner import JobRunner


def request_hash(kind: JobKind, model_id: str | None, doc: Any) -> str:
    """What makes two requests "the same" for an idempotency key."""
    text = json.dumps({"kind": kind.value, "model_id": model_id, "doc": doc}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def scoped_key(key: str | None, payer: str | None) -> str | None:
    """The stored Idempotency-Key: the caller's key within its payer's scope (fits the 255-char column)."""
    if key is None or not payer:
        return key
    scoped = f"{payer.lower()}:{key}"
    return scoped if len(scoped) <= 255 else f"{payer.lower()}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


Cover = Callable[[PaymentTicket, int], None]


class JobService:
    def __init__(self, jobs: JobRepo, queue: JobQueue, cache: ProofCache | None = None) -> None:
        self.jobs, self.queue, self.cache = jobs, queue, cache
        self._funds = threading.Lock()  # one paid submission at a time checks and takes a payer's balance

    def existing(self, key: str | None, request: str, payer: str | None = None) -> JobRow | None:
        """The job an earlier request with this idempotency key (and payer) created, if any (same request or
        refused)."""
        key = scoped_key(key, payer)
        if key is None:
            return None
        job = self.jobs.by_idempotency_key(key)
        if job is not None and job.request_hash != request:
            raise IdempotencyConflict("this Idempotency-Key was already used for a different request",
                                      job_id=job.id)
        return job

    def submit_prove(self, model_id: str, inputs: Any, *, key: str | None = None,
                     ticket: PaymentTicket | None = None, cover: Cover | None = None,
                     salt: list[int] | None = None) -> tuple[JobRow, bool]:
        """Store and queue a prove job; returns (job, created). An existing job for ``key`` comes back as is.

        ``cover(ticket, held)`` raises when the payer's balance minus ``held`` (what its other unsettled
        jobs hold) does not cover this ticket; nothing is stored then."""
        digest = request_hash(JobKind.PROVE, model_id, inputs if salt is None else {"inputs": inputs, "salt": salt})
        payer = ticket.payer if ticket else None
        doc: dict[str, Any] = {"inputs": inputs} if salt is None else {"inputs": inputs, "salt": salt}
        new = NewJob(JobKind.PROVE, doc, digest, model_id=model_id,
                     idempotency_key=scoped_key(key, payer),
                     payment_nonce=ticket.nonce if ticket else None, payment=ticket.to_json() if ticket else None)
        if ticket is None or cover is None or not payer:
            return self._submit(new)
        with self._funds:
            found = self._found(new)
            if found is not None:
                return found, False
            cover(ticket, self.jobs.held_by(payer, besides=ticket.nonce))
            return self._submit(new)

    def open_call(self, model_id: str, request: dict[str, Any], ticket: PaymentTicket, cover: Cover) -> JobRow:
        """A paid attested call, stored as a running job that holds its payment (not queued: its route runs it).
        ``cover`` is asked first, as for a prove job, with what the payer's other unsettled calls hold."""
        doc = {"attested": request}
        new = NewJob(JobKind.PROVE, doc, request_hash(JobKind.PROVE, model_id, doc), model_id=model_id,
                     payment_nonce=ticket.nonce, payment=ticket.to_json())
        with self._funds:
            if ticket.payer:
                cover(ticket, self.jobs.held_by(ticket.payer, besides=ticket.nonce))
            try:
                job = self.jobs.create(new)
            except DuplicateJob:
                raise PaymentReplayed("this payment was already used for another request") from None
        return self.jobs.start(job.id) or job

    def finish_call(self, job_id: str, bundle_cid: str, result: dict[str, Any]) -> JobRow:
        """The call's answer is ready (``result["answer"]``, shown once paid): settle it the way a proved job
        settles. Returns the job: settled, settling (followed on chain) or failed (nothing charged)."""
        self.jobs.proved(job_id, bundle_cid=bundle_cid, result=result, final=False)
        self._runner().run(job_id, None, threading.Event())
        return self.get(job_id)

    def fail_call(self, job_id: str, code: str, message: str) -> None:
        """The call failed before its answer was ready: the job fails and its payment is released."""
        if self.jobs.failed(job_id, code, message):
            self._runner().release(self.get(job_id))

    def _runner(self) -> JobRunner:
        runner: JobRunner | None = getattr(self.queue, "runner", None)  # both queues settle with their runner
        if runner is None:
            raise RuntimeError("this job queue has no runner to settle attested calls with")
        return runner

    def submit_compile(self, spec: dict[str, Any], request: str, *, key: str | None = None) -> tuple[JobRow, bool]:
        return self._submit(NewJob(JobKind.COMPILE, spec, request, idempotency_key=key))

    def get(self, job_id: str) -> JobRow:
        job = self.jobs.get(job_id)
        if job is None:
            raise UnknownJob(f"there is no job {job_id} on this node", job_id=job_id)
        return job

    def _found(self, new: NewJob) -> JobRow | None:
        """The job stored under ``new``'s (already scoped) key, if any."""
        return self.existing(new.idempotency_key, new.request_hash)

    def _submit(self, new: NewJob) -> tuple[JobRow, bool]:
        found = self._found(new)
        if found is not None:
            return found, False
        try:
            job = self.jobs.create(new)
        except DuplicateJob:
            found = self._found(new)  # a concurrent retry won the race
            if found is not None:
                return found, False
            raise PaymentReplayed("this payment was already used for another request") from None
        if self.cache is not None and new.kind == JobKind.PROVE and self.cache.answer(job):
            found = self.jobs.get(job.id)  # proved from the cache: a free job is done, a paid one settles
            assert found is not None
            if not found.is_final:
                self.queue.submit(new.kind, job.id)
            return found, True
        self.queue.submit(new.kind, job.id)
        return job, True


def call_answer(job: JobRow) -> dict[str, Any] | None:
    """A settled attested call's answer: what its route answers with 200 (the bundle with payment and receipt)."""
    answer = (job.result or {}).get("answer")
    if answer is None or job.status != JobStatus.SETTLED:
        return None
    settlement = Settlement.from_json(job.settlement)
    payment = {k: v for k, v in (settlement.payment or {}).items() if k != "paid_bundle_cid"}
    bundle = {**answer["bundle"], "payment": payment, "receipt": settlement.receipt}
    return {**answer, "job_id": job.id, "status": job.status, "bundle": bundle, "payment": settlement.payment,
            "receipt": settlement.receipt}
