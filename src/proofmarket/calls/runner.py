"""The steps of a call, whatever engine runs them (the local thread pool, or Celery workers).

    call (kind prove, any proof system, any rail):
                  queued -> running -> run (the call's system, through the registry; bundle stored once) -> proved
                  -> [paid] the call's rail captures -> settled
                                                     -> settling (sent, not confirmed) -> follow -> settled | failed
    compile job:  queued -> running -> compile (child process) -> model served -> proved

Any error of the tree fails the job with its code; nothing is settled and its payment is released. A job
already proved that only awaits its settlement (after a restart) goes straight to the settle step. A job
``settling`` keeps its hold: ``follow`` (called periodically, also after a restart) settles it once the
authorization is used on chain, or fails it (nothing charged, result withheld) once it expired unused.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from proofmarket.calls.batch_queue import BatchKey
from proofmarket.calls.cache import ProofCache
from proofmarket.calls.compile_task import compile_job
from proofmarket.calls.metrics import CallMetrics
from proofmarket.core.errors import PaymentSettlementFailed, PaymentSettlementPending, ProofMarketError, ProvingError
from proofmarket.core.logs import CALL_ID, REQUEST_ID
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, CallRepo, CallRow, CallStatus, ModelRepo, ProofCacheRepo, lost_connection
from proofmarket.payments.port import Rail, Rails
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.store import ArtifactStore
from proofmarket.systems import parse_bundle
from proofmarket.systems.port import Batching, Bundle, Events, Execution
from proofmarket.systems.registry import DEFAULT_SYSTEM, WorkerSystems

log = logging.getLogger(__name__)
SettleLater = Callable[[CallRow, Bundle | None], None]  # (the call, its parsed bundle or None): settle it elsewhere


@contextmanager
def call_context(job: CallRow) -> Iterator[None]:
    """Every log line written inside names the call and the request that made it (core.logs), in any process: the
    request id travels on the call's row."""
    call, request = CALL_ID.set(job.id), REQUEST_ID.set(job.request_id or REQUEST_ID.get())
    try:
        yield
    finally:
        REQUEST_ID.reset(request)
        CALL_ID.reset(call)


class CallRunner:
    def __init__(self, settings: Settings, calls: CallRepo, models: ModelRepo, store: ArtifactStore,
                 rails: Rails | Rail, metrics: CallMetrics, cache: ProofCacheRepo | None = None) -> None:
        self.settings, self.calls, self.models, self.store = settings, calls, models, store
        self.rails = rails if isinstance(rails, Rails) else Rails(rails)
        self.metrics = metrics
        self.settles = True  # False in a 'proofmarket worker': the node settles what workers proved
        # after-capture hooks (split release, ERC-8004 record...): called once per captured call, never raise
        self.after_capture: list[Callable[[CallRow, Settlement, ProofOutcome], None]] = []
        # record hooks (webhooks...): called when a job reaches its final state, never raise
        self.on_final: list[Callable[[CallRow], None]] = []
        # called with a call's id and final row as soon as its final state is stored, before the record hooks:
        # whoever waits to answer it (the local queue's watchers) need not wait for webhooks and metrics, nor read
        # the row again; never raise
        self.delivered: list[Callable[[str, CallRow | None], None]] = []
        # the worker's side of the cache: store what it proves, reuse what another job proved meanwhile (the
        # node looks jobs up at submission and counts hits and misses)
        self.cache = ProofCache(cache, store, calls) if cache is not None else None

    def run(self, job_id: str, systems: WorkerSystems | None, stop: threading.Event,
            events: Events | None = None, settle_later: SettleLater | None = None, row: CallRow | None = None) -> bool:
        """Run one call to its end; every failure is recorded on the call, never raised. ``settle_later``: hand the
        step after a call's execution (settle, count, deliver) to it instead of doing it here, so that this thread
        (and its prover process) takes the next call at once. ``row``: the call as it was queued (not read again: its
        start is a conditional update, which a call no longer queued fails). Returns True when it was handed over."""
        queued = row is not None and row.id == job_id and row.status == CallStatus.QUEUED
        job = row if queued else self.calls.get(job_id)
        if job is None or job.is_final:
            return False
        with call_context(job):
            return self._guarded(job, lambda: self._steps(job, systems, stop, events, settle_later))

    def batch_key(self, job_id: str, systems: WorkerSystems, row: CallRow | None = None) -> BatchKey | None:
        """The key under which a queued call may share a proof with others (None: it is proven alone): its system's
        ``batch_key`` for its model and request, within its caller's own calls (``caller``: the payer, else the
        client's address; a shared proof's instances show every slot, so strangers never share one). ``row``: the
        call as it was queued (its model and request do not change)."""
        job = row if row is not None and row.id == job_id else self.calls.get(job_id)
        if job is None or job.status != CallStatus.QUEUED or job.kind != CallKind.PROVE or not job.model_id:
            return None
        runtime = systems.get(job.system or DEFAULT_SYSTEM)
        if not isinstance(runtime, Batching):
            return None
        found = runtime.batch_key(job.model_id, job.input)
        if found is None:
            return None
        caller = str((job.input or {}).get("caller") or job.id)  # a batch holds one caller's calls, never strangers'
        return BatchKey(f"{job.system}:{found[0]}:{caller}", found[1])

    def run_batch(self, job_ids: list[str], systems: WorkerSystems, stop: threading.Event,
                  settle_later: SettleLater) -> set[str]:
        """Run queued calls to one model that may share a proof (``batch_key``) through their system's
        ``run_batch``: each call is started, recorded, failed or handed to ``settle_later`` on its own, as ``run``
        does (a call no longer queued goes through ``run``). Returns the ids handed over."""
        handed: set[str] = set()
        jobs: list[CallRow] = []
        for job_id in job_ids:
            job = self.calls.start(job_id)
            if job is None:
                if self.run(job_id, systems, stop, settle_later=settle_later):
                    handed.add(job_id)
            elif self.cache is not None and self.cache.answer(job, running=True):  # proved meanwhile by another
                settle_later(job, None)
                handed.add(job_id)
            else:
                jobs.append(job)
        if not jobs:
            return handed
        runtime = systems.get(jobs[0].system or DEFAULT_SYSTEM)
        assert isinstance(runtime, Batching) and jobs[0].model_id is not None
        outcomes, elapsed = self._run_batch(runtime, jobs[0].model_id, jobs)
        recorded: list[tuple[CallRow, Execution]] = []
        for job, outcome in zip(jobs, outcomes, strict=True):
            with call_context(job):
                if isinstance(outcome, ProofMarketError):
                    self._fail(job, outcome.code, outcome.message)
                elif self._guarded(job, functools.partial(self._record, job, outcome, elapsed)):
                    recorded.append((job, outcome))
        for job, execution in recorded:  # each call of the proof recorded before any is settled: a rail that
            settle_later(job, execution.bundle)  # settles a shared proof's calls at once finds them all
            handed.add(job.id)
        return handed

    def _run_batch(self, runtime: Batching, model_id: str,
                   jobs: list[CallRow]) -> tuple[list[Execution | ProofMarketError], float]:
        """Each call's execution or error, and the seconds the batch took (every call of it waited that long)."""
        self.metrics.running.inc(len(jobs))
        start = time.perf_counter()
        outcomes: list[Execution | ProofMarketError]
        try:
            outcomes = runtime.run_batch(model_id, [job.input for job in jobs])
        except ProofMarketError as exc:
            outcomes = [exc] * len(jobs)
        except Exception as exc:  # a bug: every call of the batch fails with it, the worker stays alive
            log.exception("a batch of %d calls failed unexpectedly", len(jobs))
            outcomes = [ProvingError(f"the call failed unexpectedly ({type(exc).__name__})")] * len(jobs)
        finally:
            self.metrics.running.dec(len(jobs))
        return outcomes, time.perf_counter() - start

    def _record(self, job: CallRow, execution: Execution, elapsed: float) -> bool:
        self._proved(job, execution, elapsed)
        return True

    def settle_after(self, job: CallRow, bundle: Bundle | None) -> None:
        """The step ``run`` handed over (``settle_later``): settle, count and deliver; failures recorded, never
        raised."""
        self._guarded(job, lambda: self._settle_and_count(job, bundle))

    def _guarded(self, job: CallRow, step: Callable[[], bool | None]) -> bool:
        try:
            return bool(step())
        except ProofMarketError as exc:
            self._fail(job, exc.code, exc.message)
        except Exception as exc:
            if lost_connection(exc):  # not the call's fault: the engine runs it again (a worker's janitor, a restart)
                log.warning("job %s: the database connection was lost (%s); the job is left for the queue's recovery",
                            job.id, type(exc.__cause__ or exc).__name__)
                return False
            log.exception("job %s failed unexpectedly", job.id)  # a bug: record it, keep the worker alive
            self._fail(job, "internal_error", f"{type(exc).__name__}: {exc}")
        return False

    def _steps(self, job: CallRow, systems: WorkerSystems | None, stop: threading.Event,
               events: Events | None, settle_later: SettleLater | None = None) -> bool:
        bundle: Bundle | None = None
        if job.status == CallStatus.QUEUED:
            started = self.calls.start(job.id)
            if started is None:
                return False
            self.metrics.running.inc()
            try:
                if job.kind == CallKind.COMPILE:
                    self._compile(started, stop)
                else:
                    assert systems is not None, "a call needs the worker's proof systems"
                    bundle, proved = self._execute(started, systems, events)
                    job = proved or job  # the settle step reads no row the proof step just wrote
            finally:
                self.metrics.running.dec()
        if settle_later is not None and job.kind == CallKind.PROVE:
            settle_later(job, bundle)
            return True
        self._settle_and_count(job, bundle)
        return False

    def _settle_and_count(self, job: CallRow, bundle: Bundle | None) -> None:
        """The step after execution, whoever ran it: settle a paid call (here, unless a node settles for this
        worker), then count the call once it is final."""
        if job.status != CallStatus.PROVED or job.bundle_cid is None:  # an older row: read it as it is now
            job = self.calls.get(job.id) or job
        captured = self._settle(job, bundle) if job.awaits_settlement and self.settles else None
        final = captured[0] if captured is not None else job if job.is_final else self.calls.get(job.id)
        if final is not None and final.is_final:
            self._finished(final, deliver=True)
        if captured is not None:  # after the caller has its answer: what these hooks start is not the caller's
            self._captured(job, *captured[1:])

    def _finished(self, job: CallRow, deliver: bool = False) -> None:
        """Count a final call, let its waiters answer (``deliver``), then run the record hooks."""
        self.metrics.finished.labels(job.kind, job.status).inc()
        if job.kind == CallKind.PROVE:
            self.metrics.calls.labels(job.system or DEFAULT_SYSTEM, job.rail or "free", job.model_id or "",
                                      job.status).inc()
        for notify in self.delivered if deliver else ():
            notify(job.id, job)
        for hook in self.on_final:
            try:
                hook(job)
            except Exception:  # the call is recorded: a hook's failure is logged, never the call's
                log.exception("a record hook failed for job %s", job.id)

    def _execute(self, job: CallRow, systems: WorkerSystems,
                 events: Events | None) -> tuple[Bundle | None, CallRow | None]:
        """Run the call on its proof system; returns the parsed bundle and the proved row (the settle step reads
        neither back)."""
        assert job.model_id is not None
        if self.cache is not None and self.cache.answer(job, running=True):  # proved meanwhile by another job
            return None, None
        start = time.perf_counter()
        execution = systems.get(job.system or DEFAULT_SYSTEM).run(job.model_id, job.input, events)
        return execution.bundle, self._proved(job, execution, time.perf_counter() - start)

    def _proved(self, job: CallRow, execution: Execution, elapsed: float | None) -> CallRow | None:
        out: dict[str, Any] = dict(execution.result)
        if elapsed is not None:
            self.metrics.duration.labels(CallKind.PROVE.value).observe(elapsed)
            self.metrics.call_seconds.labels(job.system or DEFAULT_SYSTEM, job.rail or "free",
                                             job.model_id or "").observe(elapsed)
            out["run_s"] = round(elapsed, 4)  # the analytics' proof time (the call's latency is its timestamps)
        if isinstance(out.get("tokens"), int):
            self.metrics.tokens.inc(out["tokens"])
            self.metrics.model_tokens.labels(job.model_id or "").inc(out["tokens"])
        if execution.answer is not None:
            out["answer"] = execution.answer
        if self.cache is not None:  # before the job is final: a repeat right after the answer finds it
            self.cache.remember(job, execution.bundle_cid)
        proved = self.calls.proved(job.id, bundle_cid=execution.bundle_cid, result=out, final=job.payment is None)
        log.info("call %s proved%s (bundle %s)", job.id, f" in {elapsed:.3f} s" if elapsed is not None else "",
                 execution.bundle_cid)
        return proved

    def _settle(self, job: CallRow, bundle: Bundle | None = None) -> tuple[CallRow, Settlement, ProofOutcome] | None:
        """Settle through the call's rail; the settled row and the capture (for the after-capture hooks) when the
        money moved now."""
        assert job.payment is not None and job.bundle_cid is not None
        outcome = ProofOutcome.of(job.id, job.bundle_cid,
                                  self._stored(job.bundle_cid) if bundle is None else bundle)
        try:
            settlement = self.rails.get(job.rail).settle(Ticket.from_json(job.payment), outcome)
        except PaymentSettlementPending as exc:
            log.warning("job %s: settlement pending (%s); following it on chain", job.id, exc.message)
            self.calls.settling(job.id, {"pending": {"tx": exc.details.get("tx"), "since": int(time.time()),
                                                    "message": exc.message}})
            return None
        settled = self.calls.settled(job.id, settlement.to_json(), settlement.transfers)
        return (settled, settlement, outcome) if settled is not None else None

    def _stored(self, bundle_cid: str) -> dict[str, Any]:
        """A call's stored bundle (settled after a restart, by the node for a worker, or followed on chain):
        checked as a bundle of its system, used as its document."""
        doc: dict[str, Any] = self.store.get_json(bundle_cid)
        parse_bundle(doc)
        return doc

    def _captured(self, job: CallRow, settlement: Settlement, outcome: ProofOutcome) -> None:
        amount = str((settlement.payment or {}).get("amount") or "0")
        if amount.isdigit():
            self.metrics.revenue.labels(job.model_id or "", job.rail or "free").inc(int(amount))
        for hook in self.after_capture:
            try:
                hook(job, settlement, outcome)
            except Exception:  # the money moved: a hook's failure is logged, never the call's
                log.exception("an after-capture hook failed for call %s", job.id)

    def follow(self, job_id: str) -> None:
        """One look at a ``settling`` job's authorization on chain: settled, failed (expired unused or
        canceled: nothing charged, the result withheld), or left settling. Never raises."""
        job = self.calls.get(job_id)
        if job is None or job.status != CallStatus.SETTLING or job.payment is None or job.bundle_cid is None:
            return
        pending = (job.settlement or {}).get("pending") or {}
        try:
            outcome = ProofOutcome.of(job.id, job.bundle_cid, self._stored(job.bundle_cid))
            settlement = self.rails.get(job.rail).follow(Ticket.from_json(job.payment), outcome,
                                                         pending.get("tx"))
        except PaymentSettlementFailed as exc:
            self._fail(job, exc.code, exc.message)
            return
        except PaymentSettlementPending as exc:
            log.warning("job %s: still settling: %s", job_id, exc.message)
            return
        except Exception:  # the chain did not answer: keep the hold, look again later
            log.warning("job %s: could not follow its settlement yet", job_id, exc_info=True)
            return
        if settlement is not None and self.calls.settled(job.id, settlement.to_json(), settlement.transfers):
            self._captured(job, settlement, outcome)
            final = self.calls.get(job.id)
            if final is not None:
                self._finished(final)

    def _compile(self, job: CallRow, stop: threading.Event) -> None:
        spec = job.input
        start = time.perf_counter()
        most = self.settings.queue.compile_timeout_s
        timeout = min(most, float(spec.get("timeout_s") or most))
        done = compile_job(self.settings, spec, timeout, stop,  # an owner's compile: what is left of its day
                           progress=lambda step: self.calls.progress(job.id, step))
        self.metrics.duration.labels(CallKind.COMPILE.value).observe(time.perf_counter() - start)
        listing = {k: spec[k] for k in ("status", "catalog", "catalog_cid", "supersedes", "size_bytes") if k in spec}
        self.models.upsert(done["model_id"], name=spec["name"], price_atomic=int(spec["price_atomic"]),
                           owner=spec.get("owner"), claim=bool(spec.get("claim")), **listing)
        self.calls.proved(job.id, bundle_cid=None, result=done, final=True, model_id=done["model_id"])

    def release(self, job: CallRow) -> None:
        """Give the payment of a failed job back to the gate (never raises: the job is failed already)."""
        if job.payment is None:
            return
        try:
            self.rails.get(job.rail).release(Ticket.from_json(job.payment))
        except Exception:
            log.exception("could not release the payment of failed job %s", job.id)

    def _fail(self, job: CallRow, code: str, message: str) -> None:
        log.warning("job %s failed: %s: %s", job.id, code, message)  # the detail; the public sees code + sentence
        if self.calls.failed(job.id, code, message):
            self.release(job)  # before the callers waiting on the job are told: their answer finds it released
            self.metrics.failures.labels(job.kind, code).inc()
            failed = self.calls.get(job.id)
            self._finished(failed if failed is not None else job)
