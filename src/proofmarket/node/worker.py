"""``proofmarket worker``: one Celery worker process that runs the node's calls (see ``calls.celery_queue``).

It runs one job at a time (the solo pool: EZKL holds the GIL, and the prover's own process does the work);
scale by starting more workers, on this machine or others. A worker needs what the node has: the database
(``PROOFMARKET_DATABASE_URL``, PostgreSQL across machines), the artifact store (``PROOFMARKET_HOME`` on a
shared disk) and Redis; no payment keys: it proves, and a node settles the payment (``CeleryCallQueue``'s
settler). Before its first job it starts its prover process with EZKL loaded; for every model it checks that
the model was compiled with its EZKL version (``ezkl_version_mismatch`` otherwise: nothing proved, nothing
charged) and that the artifacts it reads still hash to their CIDs (``artifact_corrupt``). A call on a sliced model
is shared: its slices go to every worker (``calls/slice_share.py``), each proving what it takes.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from proofmarket.calls.celery_queue import (
    COMPILE_QUEUE,
    PROVE_QUEUE,
    TASK,
    Heartbeat,
    celery_app,
    check_redis,
    model_queue,
)
from proofmarket.calls.events import END, publisher
from proofmarket.calls.slice_share import SLICE_QUEUE, SLICE_TASK, SliceShare
from proofmarket.core.settings import Settings
from proofmarket.node.compose import WorkerContext

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, name: str | None = None, models: list[str] | None = None,
               compile_jobs: bool = True) -> None:
    """Serve jobs until stopped (SIGTERM/SIGINT: the job in hand finishes first, Celery's warm shutdown)."""
    from proofmarket.systems.ezkl.ezkl_calls import EZKL_VERSION

    client = check_redis(settings.queue.redis_url)
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    models = models or []
    app = celery_app(settings)
    share = SliceShare(client, lambda call_id, k: app.send_task(SLICE_TASK, args=[call_id, k], queue=SLICE_QUEUE),
                       name, settings.queue.proof_timeout_s)
    ctx = WorkerContext(settings, slice_share=share)
    beat = Heartbeat(client, name, models, {"pid": os.getpid(), "host": socket.gethostname(), "warm": False,
                                            "ezkl": EZKL_VERSION, "models": models})

    def run_job(self: Any, job_id: str) -> None:
        beat.running(job_id)
        sent: list[str] = []  # a generation's tokens reach the node's stream through Redis
        publish = publisher(client, job_id)

        def events(event: str, data: Any) -> None:
            sent.append(event)
            publish(event, data)

        try:
            ctx.runner.run(job_id, ctx.worker, ctx.stop, events=events)
        finally:
            if sent:  # this worker ran it (a duplicate message runs nothing, and ends nobody's stream)
                publish(END, {})
            beat.running(None)

    def prove_slice(self: Any, call_id: str, index: int) -> None:
        from proofmarket.systems.ids import SLICED_SYSTEM

        ctx.systems.get(SLICED_SYSTEM).help(call_id, index)  # type: ignore[attr-defined]

    app.task(name=TASK, bind=True, acks_late=True)(run_job)  # registered by call: Celery's decorator is untyped
    app.task(name=SLICE_TASK, bind=True, acks_late=True)(prove_slice)

    try:
        ctx.worker.warm()
        beat.info["warm"] = True
    except Exception:
        log.warning("could not warm up the prover process; the first proof will start it", exc_info=True)
    beat.start()
    queues = [SLICE_QUEUE, *(model_queue(m) for m in models), PROVE_QUEUE, *([COMPILE_QUEUE] if compile_jobs else [])]
    worker = app.Worker(hostname=f"{name}@{socket.gethostname()}", queues=queues, pool="solo", concurrency=1,
                        loglevel="INFO", without_gossip=True, without_mingle=True, without_heartbeat=True,
                        quiet=True)
    try:
        worker.start()
    finally:
        beat.stop()
        ctx.close()
