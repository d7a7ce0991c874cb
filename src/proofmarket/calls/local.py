"""The local engine: a few worker threads running calls, and one compile lane.

Each worker thread has its own view of the node's proof systems (``WorkerSystems``): a system that needs its own
process per worker (EZKL: a warm ``ProofWorker`` process, since EZKL holds the GIL and proofs never run in the API
process) gets one per thread; others (attested) are shared. Uploaded models compile one at a time in a child
process.

Restart rule (``recover``, run once when the queue is built, before any worker starts):

* ``running`` jobs are failed with code ``interrupted``: their proof died with the old process; their
  payment, if any, was never settled and is released. A client retries with a new Idempotency-Key.
* ``queued`` jobs never started: they go back on the queue with their stored input and payment.
* ``proved`` jobs whose payment was not yet settled go back on the queue for the settle step only.
* ``settling`` jobs (settlement sent, not confirmed) are followed on chain by the node's settler.

A worker thread only executes: once its call is proved it hands the settle step (settle, count, answer) to the
node's settler (``calls/settling.py``: ``CallSettler.hand``) and takes the next call, so its prover process never
waits for a settlement's bookkeeping or its chain round trip.

One node per database: a second node sharing the database would fail the first one's running jobs.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError

from proofmarket.calls.batch_queue import BatchingQueue, BatchKey
from proofmarket.calls.queue import QueueHealth
from proofmarket.calls.runner import CallRunner
from proofmarket.calls.settling import CallSettler
from proofmarket.db import CallKind, CallRepo, CallRow, Recovery
from proofmarket.systems.port import Bundle, Events
from proofmarket.systems.registry import WorkerSystems

log = logging.getLogger(__name__)
_STOP = "__stop__"
FINALS_KEPT = 256  # final rows delivered lately, kept for a request that watches its call after it ended
FINAL_FRESH_S = 30.0  # ... for this long: a later watcher reads the row (it may have changed since)


class LocalCallQueue:
    def __init__(self, runner: CallRunner, calls: CallRepo, workers: Sequence[WorkerSystems],
                 settler: CallSettler) -> None:
        if not workers:
            raise ValueError("the local engine needs at least one worker")
        self.runner, self.calls, self.workers = runner, calls, list(workers)
        self._prove_q = BatchingQueue()
        self._compile_q = BatchingQueue()  # a FIFO here (the compiler takes one at a time)
        self._watchers: dict[str, list[Future[CallRow | None]]] = {}
        self._keys: dict[str, BatchKey | None] = {}  # queued calls' batch keys, read once each
        # the calls queued here and not delivered yet (a watcher waits for their delivery without reading them), with
        # the row each was submitted with (its worker starts it from that row: the start is a conditional update)
        self._pending: dict[str, CallRow | None] = {}
        self._listeners: dict[str, tuple[Events, threading.Event]] = {}  # a run's events, and when they are all out
        # the final rows delivered lately (when): a request that watches its call once it ended (a loaded machine ran
        # the whole call before the request subscribed), or whose waiter a later row-less delivery took, is answered
        # from the row the settler delivered, not a read
        self._finals: collections.OrderedDict[str, tuple[CallRow, float]] = collections.OrderedDict()
        self.window_s = runner.settings.queue.batch_window_ms / 1000
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.recovery = Recovery()
        self.settler = settler  # the node's settler: a proved call is handed to it (``CallSettler.hand``)
        settler.delivered.append(self._notify)
        runner.delivered.append(self._notify)  # a waiting request answers before the record hooks run
        runner.metrics.track_depth(self.depth)
        runner.metrics.track_workers(lambda: self.alive_workers)

    def recover(self) -> Recovery:
        self.recovery = self.calls.recover()
        if self.recovery.interrupted:
            log.warning("failed %d job(s) interrupted by the last stop", len(self.recovery.interrupted))
        for job_id in self.recovery.interrupted:
            job = self.calls.get(job_id)
            if job is not None:
                self.runner.release(job)
        for kind, job_id in self.recovery.requeued:
            self.submit(CallKind(kind), job_id)
        return self.recovery

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()  # started again after a stop: a stop a dead thread left unread must not end a new one
        for q in (self._prove_q, self._compile_q):
            q.discard(_STOP)
        for i, worker in enumerate(self.workers):
            self._spawn(f"prover-{i}", self._prove_q, functools.partial(self._run, worker), worker,
                        functools.partial(self._batch, worker))
        self._spawn("compiler", self._compile_q, functools.partial(self._run, None))

    def submit(self, kind: CallKind, job_id: str, row: CallRow | None = None) -> None:
        with self._lock:
            self._pending[job_id] = row  # the runner starts from it only while it says queued
        (self._compile_q if kind == CallKind.COMPILE else self._prove_q).put(job_id)

    def watch(self, job_id: str) -> Future[CallRow | None]:
        """A future resolved when a worker is done with ``job_id``, with the call's final row when its worker or
        settler had it (else None: read it); resolved at once if the job is final. A call queued here and not
        delivered yet is not read: its delivery resolves the future."""
        fut: Future[CallRow | None] = Future()
        with self._lock:
            final = self._final(job_id)
            if final is not None:
                fut.set_result(final)
                return fut
            self._watchers.setdefault(job_id, []).append(fut)
            if job_id in self._pending:
                return fut
        job = self.calls.get(job_id)
        if job is None or job.is_final:
            self._notify(job_id, job)
        return fut

    def _final(self, job_id: str) -> CallRow | None:
        """The final row delivered for ``job_id`` within ``FINAL_FRESH_S`` (under the lock)."""
        kept = self._finals.get(job_id)
        return kept[0] if kept is not None and time.monotonic() - kept[1] <= FINAL_FRESH_S else None

    def listen(self, job_id: str, events: Events) -> threading.Event:
        """``events`` gets the events of ``job_id``'s run on its worker thread; the event is set once the run ended."""
        done = threading.Event()
        with self._lock:
            self._listeners[job_id] = (events, done)
        return done

    def depth(self) -> int:
        return self._prove_q.qsize() + self._compile_q.qsize()

    @property
    def warm_provers(self) -> int:
        """Prover processes alive with EZKL loaded (the node warms them up as it starts; a killed one
        counts again once it is restarted by the next proof)."""
        return sum(w.ready for w in self.workers)

    @property
    def alive_workers(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def running(self) -> bool:
        """The engine's own threads run (its provers)."""
        return self.alive_workers > 0

    def health(self) -> QueueHealth:
        workers = self.alive_workers
        return QueueHealth("local", workers, self.warm_provers, self.depth(), workers > 0,
                           "" if workers else "no prover thread is running")

    def close(self) -> None:
        self._stop.set()
        if self._threads:  # one stop for each prover thread, one for the compiler: none is left for a restart
            for _ in self.workers:
                self._prove_q.put(_STOP)
            self._compile_q.put(_STOP)
        for t in self._threads:
            t.join(30)
        self._threads.clear()  # the proved calls handed over are the settler's: it stops after the engine
        # the systems' processes are the node's (``SystemSet.close``, when the node closes)

    def _run(self, worker: WorkerSystems | None, job_ids: list[str]) -> set[str]:
        """Run the calls taken together (one, or a batch that may share a proof); the ids handed to the settle
        threads (delivered by them)."""
        settle_later = self._settle_later if worker else None
        with self._lock:
            rows = {i: self._pending.get(i) for i in job_ids}
            listening = {i: self._listeners.pop(i) for i in job_ids if i in self._listeners}
        try:
            if len(job_ids) == 1 or worker is None:
                return {i for i in job_ids if self.runner.run(i, worker, self._stop, settle_later=settle_later,
                                                              row=rows[i], events=listening.get(i, (None,))[0])}
            return self.runner.run_batch(job_ids, worker, self._stop, settle_later=self._settle_later)
        finally:
            for _, done in listening.values():
                done.set()

    def _batch(self, worker: WorkerSystems, first: str) -> list[str]:
        """``first`` and the queued calls that may share its proof (``BatchingQueue.batch``)."""
        taken = self._prove_q.batch(first, functools.partial(self._key_of, worker), self.window_s,
                                    lambda item: item == _STOP)
        for item in taken:
            self._keys.pop(item, None)
        return taken

    def _key_of(self, worker: WorkerSystems, job_id: str) -> BatchKey | None:
        if job_id not in self._keys:
            with self._lock:
                row = self._pending.get(job_id)
            try:
                self._keys[job_id] = self.runner.batch_key(job_id, worker, row)
            except Exception:  # the call runs alone and meets its error there
                log.warning("could not read the batch key of call %s", job_id, exc_info=True)
                self._keys[job_id] = None
        return self._keys[job_id]

    def _settle_later(self, job: CallRow, bundle: Bundle | None) -> None:
        self.settler.hand(job, bundle)

    def _spawn(self, name: str, q: BatchingQueue, run: Callable[[list[str]], set[str]],
               warm: WorkerSystems | None = None, batch: Callable[[str], list[str]] | None = None) -> None:
        t = threading.Thread(target=self._loop, args=(q, run, warm, batch), name=f"proofmarket-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _loop(self, q: BatchingQueue, run: Callable[[list[str]], set[str]],
              warm: WorkerSystems | None = None, batch: Callable[[str], list[str]] | None = None) -> None:
        # Each prover thread starts its prover process before its first job, so that the first paid
        # call does not wait for a Python process and EZKL to load (about 1 s). Best effort: a failure
        # here shows again, with its code, on the first proof.
        warm_up = getattr(warm, "warm", None)
        if callable(warm_up):
            try:
                warm_up()
            except Exception:
                log.warning("could not warm up a prover process; the first proof will start it", exc_info=True)
        while not self._stop.is_set():
            job_id = q.get()
            if job_id == _STOP:
                return
            taken = batch(job_id) if batch is not None else [job_id]
            handed: set[str] = set()
            try:
                handed = run(taken)
            finally:
                for item in taken:
                    if item not in handed:  # a handed-over call is delivered by its settle thread
                        self._notify(item)

    def _notify(self, job_id: str, row: CallRow | None = None) -> None:
        """A worker or the settler is done with ``job_id`` (``row``: its final row, when the notifier has it)."""
        with self._lock:
            self._pending.pop(job_id, None)
            futures = self._watchers.pop(job_id, [])
            final = row if row is not None and row.is_final else self._final(job_id)  # a row-less second delivery
            if row is not None and row.is_final:
                self._finals[job_id] = (row, time.monotonic())
                self._finals.move_to_end(job_id)
                while len(self._finals) > FINALS_KEPT:
                    self._finals.popitem(last=False)
        for fut in futures:
            with contextlib.suppress(InvalidStateError):  # the watcher gave up (cancelled) in the meantime
                fut.set_result(final)
