"""Creating jobs: idempotency keys and payment nonces are enforced here (and by the table's unique columns).

* The same Idempotency-Key with the same request returns the job it created first (whatever its state);
  with a different request it is refused (``idempotency_conflict``). Keys are scoped by payer: a paid
  job's key is found again only by the same payer (``scoped_key``), never by an unpaid or other caller.
* A payment nonce pays for one job: a second job with it is refused (``payment_replayed``).
* A payer's balance is reserved across its unsettled jobs: ``cover(ticket, held)`` is asked, under a lock,
  with what the payer's other unsettled jobs hold, before the job is stored and queued.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from proofmarket.db import DuplicateJob, JobKind, JobRepo, JobRow, NewJob
from proofmarket.errors import PaymentReplayed
from proofmarket.jobs.cache import ProofCache
from proofmarket.jobs.errors import IdempotencyConflict, UnknownJob
from proofmarket.jobs.queue import JobQueue
from proofmarket.jobs.types import PaymentTicket


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
