"""The job queue port. Jobs live in the database; a queue only decides who runs them and when.

``submit`` takes a job already stored as ``queued`` (with its row when the caller holds it: the engine need not read
it back); ``watch`` gives a future that resolves when a worker is done with the job, with the job's final row when
the engine has it (else None: read its outcome from the database): an engine whose workers run elsewhere resolves
it by polling the job row (``poll_watch``). ``health`` says what the node can tell about its
workers. Implementations: :class:`proofmarket.calls.local.LocalCallQueue` (threads and prover processes in the
node) and :class:`proofmarket.calls.celery_queue.CeleryCallQueue` (workers on any machine, Redis broker).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Protocol

from proofmarket.db import CallKind, CallRepo, CallRow
from proofmarket.systems.port import Events


@dataclass(frozen=True)
class QueueHealth:
    engine: str  # "local" | "celery"
    workers: int  # worker threads alive (local) or worker processes answering (celery)
    warm_provers: int  # prover processes with EZKL loaded
    depth: int  # jobs waiting for a worker
    ok: bool  # the node can get jobs done (a worker is there, the broker answers)
    detail: str = ""


class CallQueue(Protocol):
    def recover(self) -> object:
        """Once, before ``start``: the restart rule. Calls the last stop left running fail as interrupted (their
        payments released) where this engine ran them; calls stored as queued go to the workers again."""
        ...

    def start(self) -> None: ...

    def submit(self, kind: CallKind, job_id: str, row: CallRow | None = None) -> None: ...

    def watch(self, job_id: str) -> Future[CallRow | None]: ...

    def listen(self, job_id: str, events: Events) -> threading.Event:
        """Hand the events of ``job_id``'s run (a generation's tokens) to ``events``, from before it is queued; the
        event returned is set once its run's last event was handed over."""
        ...

    def depth(self) -> int:
        """Jobs waiting for a worker."""
        ...

    def health(self) -> QueueHealth: ...

    def running(self) -> bool:
        """The engine's own loops run in this process (the workers' availability is ``health``)."""
        ...

    def close(self) -> None: ...


def poll_watch(calls: CallRepo, job_id: str, interval_s: float = 0.05, stop: threading.Event | None = None,
               timeout_s: float = 24 * 3600.0) -> Future[CallRow | None]:
    """A future resolved once ``job_id`` is final (with its final row) or gone (None), found by reading the job row
    every ``interval_s`` in a daemon thread; a cancelled future stops the polling."""
    fut: Future[CallRow | None] = Future()
    stop = stop or threading.Event()

    def run() -> None:
        waited, job = 0.0, None
        while not fut.cancelled() and not stop.is_set() and waited < timeout_s:
            job = calls.get(job_id)
            if job is None or job.is_final:
                break
            stop.wait(interval_s)
            waited += interval_s
        with contextlib.suppress(InvalidStateError):  # cancelled by the watcher
            fut.set_result(job if job is not None and job.is_final else None)

    threading.Thread(target=run, name=f"watch-{job_id[:8]}", daemon=True).start()
    return fut
