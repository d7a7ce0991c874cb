"""``proofmarket worker``: one Celery worker process that runs the node's jobs (see ``jobs.celery_queue``).

It runs one job at a time (the solo pool: EZKL holds the GIL, and the prover's own process does the work);
scale by starting more workers, on this machine or others. A worker needs what the node has: the database
(``PROOFMARKET_DATABASE_URL``, PostgreSQL across machines), the artifact store (``PROOFMARKET_HOME`` on a
shared disk) and Redis; no payment keys: it proves, and a node settles the payment (``CeleryJobQueue``'s
settler). Before its first job it starts its prover process with EZKL loaded; for every model it checks that
the model was compiled with its EZKL version (``ezkl_version_mismatch`` otherwise: nothing proved, nothing
charged) and that the artifacts it reads still hash to their CIDs (``artifact_corrupt``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from proofmarket.calls.celery_queue import (
    COMPILE_QUEUE,
    PROVE_QUEUE,
    TASK,
    Heartbeat,
    celery_app,
    check_redis,
    model_queue,
)
from proofmarket.core.settings import Settings

log = logging.getLogger(__name__)


class WorkerContext:
    """What one worker process keeps between jobs: database, store, runner with its payments, one prover."""

    def __init__(self, settings: Settings) -> None:
        from proofmarket.api.app import build_runner
        from proofmarket.db import Database
        from proofmarket.payments.port import FreeAccess
        from proofmarket.systems.ezkl.prover import EzklProver
        from proofmarket.systems.ezkl.worker import ProofWorker
        from proofmarket.systems.workspace import Workspace

        self.settings = settings
        self.db = Database(settings.db_url)
        self.db.migrate()
        self.ws = Workspace(settings)
        # payments stay on the nodes: a worker proves, the node settles (its keys, its one nonce sequence)
        self.runner, _ = build_runner(settings, self.db, self.ws, CollectorRegistry(), FreeAccess())
        self.runner.settles = False
        self.prover = CheckedProver(EzklProver(self.ws.store, settings.jobs_dir,
                                               ProofWorker(timeout_s=settings.proof_timeout_s)), self.ws.store)
        self.stop = threading.Event()

    def close(self) -> None:
        self.stop.set()
        self.prover.close()
        self.ws.close()
        self.db.close()


class CheckedProver:
    """An EzklProver that first checks, once per model, that the artifacts it will read hash to their CIDs."""

    def __init__(self, inner: Any, store: Any) -> None:
        self.inner, self.store = inner, store
        self._checked: set[str] = set()

    def prove(self, model_id: str, inputs_doc: Any, timeout_s: float | None = None,
              salt: list[int] | None = None) -> Any:
        if model_id not in self._checked:
            self.check(model_id)
        return self.inner.prove(model_id, inputs_doc, timeout_s, salt)

    def check(self, model_id: str) -> None:
        from proofmarket.core.errors import ArtifactCorrupt

        manifest, _ = self.inner.model(model_id)
        for name in ("onnx", "compiled", "pk", "vk", "srs", "settings"):
            cid = getattr(manifest, name).cid
            if not self.store.verify(cid):
                raise ArtifactCorrupt(f"the stored {name} of model {model_id} does not hash to its CID {cid}: "
                                      "refused (fetch it again)", model_id=model_id, cid=cid)
        self._checked.add(model_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def run_worker(settings: Settings, *, name: str | None = None, models: list[str] | None = None,
               compile_jobs: bool = True) -> None:
    """Serve jobs until stopped (SIGTERM/SIGINT: the job in hand finishes first, Celery's warm shutdown)."""
    from proofmarket.systems.ezkl.ezkl_calls import EZKL_VERSION

    client = check_redis(settings.redis_url)
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    models = models or []
    ctx = WorkerContext(settings)
    app = celery_app(settings)
    beat = Heartbeat(client, name, models, {"pid": os.getpid(), "host": socket.gethostname(), "warm": False,
                                            "ezkl": EZKL_VERSION, "models": models})

    @app.task(name=TASK, bind=True, acks_late=True)
    def run_job(self: Any, job_id: str) -> None:
        beat.running(job_id)
        try:
            ctx.runner.run(job_id, ctx.prover, ctx.stop)
        finally:
            beat.running(None)

    try:
        ctx.prover.warm()
        beat.info["warm"] = True
    except Exception:
        log.warning("could not warm up the prover process; the first proof will start it", exc_info=True)
    beat.start()
    queues = [*(model_queue(m) for m in models), PROVE_QUEUE, *([COMPILE_QUEUE] if compile_jobs else [])]
    worker = app.Worker(hostname=f"{name}@{socket.gethostname()}", queues=queues, pool="solo", concurrency=1,
                        loglevel="INFO", without_gossip=True, without_mingle=True, without_heartbeat=True,
                        quiet=True)
    try:
        worker.start()
    finally:
        beat.stop()
        ctx.close()
