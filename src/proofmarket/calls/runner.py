"""The steps of a job, whatever runs them (the local thread pool today, a distributed queue later).

    prove job:    queued -> running -> prove (worker process, self-verified) -> proved
                  -> [payment] settle hook -> settled
                                           -> settling (sent, not confirmed) -> follow -> settled | failed
    compile job:  queued -> running -> compile (child process) -> model served -> proved

Any error of the tree fails the job with its code; nothing is settled and its payment is released. A job
already proved that only awaits its settlement (after a restart) goes straight to the settle step. A job
``settling`` keeps its hold: ``follow`` (called periodically, also after a restart) settles it once the
authorization is used on chain, or fails it (nothing charged, result withheld) once it expired unused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from proofmarket.calls.cache import ProofCache
from proofmarket.calls.compile_task import compile_job
from proofmarket.calls.metrics import JobMetrics
from proofmarket.core.errors import PaymentSettlementFailed, PaymentSettlementPending, ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.db import JobKind, JobRepo, JobRow, JobStatus, ModelRepo, ProofCacheRepo
from proofmarket.payments.tickets import PaymentTicket, ProofOutcome, SettleHook
from proofmarket.store import ArtifactStore
from proofmarket.systems import parse_bundle
from proofmarket.systems.ezkl.prover import Prover

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, settings: Settings, jobs: JobRepo, models: ModelRepo, store: ArtifactStore,
                 settle: SettleHook, metrics: JobMetrics, cache: ProofCacheRepo | None = None) -> None:
        self.settings, self.jobs, self.models, self.store = settings, jobs, models, store
        self.settle_hook, self.metrics = settle, metrics
        self.settles = True  # False in a 'proofmarket worker': the node settles what workers proved
        # the worker's side of the cache: store what it proves, reuse what another job proved meanwhile (the
        # node looks jobs up at submission and counts hits and misses)
        self.cache = ProofCache(cache, store, jobs) if cache is not None else None

    def run(self, job_id: str, prover: Prover | None, stop: threading.Event) -> None:
        """Run one job to its end; every failure is recorded on the job, never raised."""
        job = self.jobs.get(job_id)
        if job is None or job.is_final:
            return
        try:
            self._steps(job, prover, stop)
        except ProofMarketError as exc:
            self._fail(job, exc.code, exc.message)
        except Exception as exc:  # a bug: record it, keep the worker alive
            log.exception("job %s failed unexpectedly", job_id)
            self._fail(job, "internal_error", f"{type(exc).__name__}: {exc}")

    def _steps(self, job: JobRow, prover: Prover | None, stop: threading.Event) -> None:
        if job.status == JobStatus.QUEUED:
            started = self.jobs.start(job.id)
            if started is None:
                return
            self.metrics.running.inc()
            try:
                if job.kind == JobKind.COMPILE:
                    self._compile(started, stop)
                else:
                    assert prover is not None, "a prove job needs a prover"
                    self._prove(started, prover)
            finally:
                self.metrics.running.dec()
            job = self.jobs.get(job.id) or job
        if job.awaits_settlement and self.settles:
            self._settle(job)
        final = self.jobs.get(job.id)
        if final is not None and final.is_final:
            self.metrics.finished.labels(final.kind, final.status).inc()

    def _prove(self, job: JobRow, prover: Prover) -> None:
        assert job.model_id is not None
        if self.cache is not None and self.cache.answer(job, running=True):  # proved meanwhile by another job
            return
        start = time.perf_counter()
        result = prover.prove(job.model_id, job.input["inputs"], salt=job.input.get("salt"))
        self.metrics.duration.labels(JobKind.PROVE.value).observe(time.perf_counter() - start)
        out: dict[str, Any] = {"output": result.bundle.output.values, "salt": result.salt}
        if self.cache is not None:  # before the job is final: a repeat right after the answer finds it
            self.cache.remember(job, result.bundle_cid)
        self.jobs.proved(job.id, bundle_cid=result.bundle_cid, result=out, final=job.payment is None)

    def _settle(self, job: JobRow) -> None:
        assert job.payment is not None and job.bundle_cid is not None
        bundle = parse_bundle(self.store.get_json(job.bundle_cid))
        try:
            settlement = self.settle_hook.settle(PaymentTicket.from_json(job.payment),
                                                 ProofOutcome.of(job.id, job.bundle_cid, bundle))
        except PaymentSettlementPending as exc:
            log.warning("job %s: settlement pending (%s); following it on chain", job.id, exc.message)
            self.jobs.settling(job.id, {"pending": {"tx": exc.details.get("tx"), "since": int(time.time()),
                                                    "message": exc.message}})
            return
        self.jobs.settled(job.id, settlement.to_json())

    def follow(self, job_id: str) -> None:
        """One look at a ``settling`` job's authorization on chain: settled, failed (expired unused or
        canceled: nothing charged, the result withheld), or left settling. Never raises."""
        job = self.jobs.get(job_id)
        if job is None or job.status != JobStatus.SETTLING or job.payment is None or job.bundle_cid is None:
            return
        pending = (job.settlement or {}).get("pending") or {}
        try:
            bundle = parse_bundle(self.store.get_json(job.bundle_cid))
            settlement = self.settle_hook.follow(PaymentTicket.from_json(job.payment),
                                                 ProofOutcome.of(job.id, job.bundle_cid, bundle), pending.get("tx"))
        except PaymentSettlementFailed as exc:
            self._fail(job, exc.code, exc.message)
            return
        except PaymentSettlementPending as exc:
            log.warning("job %s: still settling: %s", job_id, exc.message)
            return
        except Exception:  # the chain did not answer: keep the hold, look again later
            log.warning("job %s: could not follow its settlement yet", job_id, exc_info=True)
            return
        if settlement is not None and self.jobs.settled(job.id, settlement.to_json()):
            self.metrics.finished.labels(job.kind, JobStatus.SETTLED.value).inc()

    def _compile(self, job: JobRow, stop: threading.Event) -> None:
        spec = job.input
        start = time.perf_counter()
        done = compile_job(self.settings, spec, self.settings.compile_timeout_s, stop)
        self.metrics.duration.labels(JobKind.COMPILE.value).observe(time.perf_counter() - start)
        self.models.upsert(done["model_id"], name=spec["name"], price_atomic=int(spec["price_atomic"]),
                           owner=spec.get("owner"))
        self.jobs.proved(job.id, bundle_cid=None, result=done, final=True, model_id=done["model_id"])

    def release(self, job: JobRow) -> None:
        """Give the payment of a failed job back to the gate (never raises: the job is failed already)."""
        if job.payment is None:
            return
        try:
            self.settle_hook.release(PaymentTicket.from_json(job.payment))
        except Exception:
            log.exception("could not release the payment of failed job %s", job.id)

    def _fail(self, job: JobRow, code: str, message: str) -> None:
        log.warning("job %s failed: %s: %s", job.id, code, message)  # the detail; the public sees code + sentence
        if self.jobs.failed(job.id, code, message):
            self.metrics.failures.labels(job.kind, code).inc()
            self.metrics.finished.labels(job.kind, JobStatus.FAILED.value).inc()
            self.release(job)
