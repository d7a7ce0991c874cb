"""The distributed job queue: Celery with a Redis broker (``PROOFMARKET_QUEUE=celery``).

    node (API)                      Redis                         proofmarket worker (any machine)
    job row "queued" ──send_task──► proofmarket.prove[.<model>] ─► runner.run(job): prove -> "proved"
    node settler (calls/settling.py): settles "proved" paid jobs   heartbeat keys (worker, running job)
                 (one node at a time: a lease)
    watch: polls the job row
    janitor: a running job whose worker's heartbeat is gone -> queued again (at most MAX_ATTEMPTS runs)

Jobs live in the database (shared: PostgreSQL across machines); a message only names a job id, so a message
delivered twice runs nothing twice (``jobs.start`` moves queued -> running once, settlement runs once from
``proved``). Messages are acknowledged late (a killed worker's message is delivered again) and the janitor
re-queues jobs whose worker stopped heartbeating. A worker started with ``--model ID`` consumes that model's
own queue too (``proofmarket.prove.ID``): the node routes a model's jobs there while such a worker heartbeats,
so its keys stay warm in that worker's prover.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

from proofmarket.calls.events import Listener
from proofmarket.calls.queue import QueueHealth, poll_watch
from proofmarket.calls.runner import CallRunner
from proofmarket.core.errors import QueueUnavailable
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, CallRepo, CallRow, CallStatus
from proofmarket.db.tables import utcnow
from proofmarket.systems.port import Events

log = logging.getLogger(__name__)

TASK = "proofmarket.run_job"
PROVE_QUEUE, COMPILE_QUEUE = "proofmarket.prove", "proofmarket.compile"
WORKER_KEY = "proofmarket:worker:"  # + worker name: JSON heartbeat
RUNNING_KEY = "proofmarket:running:"  # + job id: the worker running it is alive
SERVES_KEY = "proofmarket:serves:"  # + model id: a worker keeps this model warm
HEARTBEAT_S, HEARTBEAT_TTL_S = 2.0, 10
GRACE_S = 15.0  # a running job without a heartbeat this long after its start: its worker is gone
MAX_ATTEMPTS = 3
RESEND_S = 60.0  # a job queued this long is sent again (a duplicate message runs nothing twice)


def model_queue(model_id: str) -> str:
    return f"{PROVE_QUEUE}.{model_id}"


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)


def check_redis(url: str) -> Any:
    """A Redis client that answered a PING; ``QueueUnavailable`` (exit code 4) when it does not, saying so when
    Redis refused the password (AUTH). The password never appears in the error."""
    import redis

    client = redis_client(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        if _refused_auth(exc):
            raise QueueUnavailable(f"Redis at {masked_url(url)} refused the password (AUTH): put the password of its "
                                   "requirepass in PROOFMARKET_REDIS_URL (redis://:PASSWORD@host:port/db)",
                                   url=masked_url(url)) from None
        raise QueueUnavailable(f"cannot reach Redis at {masked_url(url)} for the celery queue ({exc}): start "
                               "redis-server or set PROOFMARKET_REDIS_URL", url=masked_url(url)) from None
    return client


def _refused_auth(exc: Exception) -> bool:
    """A missing or wrong password: redis-py's AuthenticationError, or NOAUTH / a HELLO refused before AUTH."""
    import redis

    text = str(exc).lower()
    return isinstance(exc, redis.AuthenticationError) or any(
        word in text for word in ("noauth", "authentication required", "already authenticated", "wrongpass",
                                  "username-password"))


def masked_url(url: str) -> str:
    """The URL without a password (in its user part or in a ``password=`` query parameter)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        query = urlencode([(k, "***" if k.lower() == "password" else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "the configured PROOFMARKET_REDIS_URL"


def celery_app(settings: Settings) -> Any:
    from celery import Celery

    app = Celery("proofmarket", broker=settings.queue.redis_url)
    app.conf.update(
        task_acks_late=True,  # a message is acknowledged once its job ran: a killed worker's comes back
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a busy worker does not hoard messages others could run
        task_default_queue=PROVE_QUEUE,
        task_serializer="json", accept_content=["json"],
        task_time_limit=int(settings.queue.proof_timeout_s + 120),  # the prover stops at proof_timeout_s already
        broker_transport_options={"visibility_timeout": int(settings.queue.proof_timeout_s + 300)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_ignore_result=True,  # outcomes live in the job rows
    )
    return app


class CeleryCallQueue:
    def __init__(self, settings: Settings, calls: CallRepo, runner: CallRunner) -> None:
        """The workers' proved calls are settled by the node's settler (``CallSettler`` with ``scan``: the workers
        hold no payment keys)."""
        self.settings, self.calls, self.runner = settings, calls, runner
        self.redis = check_redis(settings.queue.redis_url)
        self.app = celery_app(settings)
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None
        self._resent: dict[str, float] = {}  # queued job id -> when the janitor last sent it again
        runner.metrics.track_depth(self.depth)
        runner.metrics.track_workers(lambda: len(self.workers()))

    def recover(self) -> None:
        """At start: jobs queued in the database go to the broker again (a message the broker lost, e.g. a
        Redis restart without persistence, must not lose a job; a duplicate message runs nothing twice)."""
        for job in self.calls.active(CallStatus.QUEUED):
            self.submit(CallKind(job.kind), job.id)

    def start(self) -> None:
        if self._janitor is not None:
            return
        self._stop.clear()
        self._janitor = threading.Thread(target=self._janitor_loop, name="proofmarket-janitor", daemon=True)
        self._janitor.start()

    def submit(self, kind: CallKind, job_id: str, row: CallRow | None = None) -> None:
        queue = COMPILE_QUEUE
        if kind != CallKind.COMPILE:
            job = row if row is not None else self.calls.get(job_id)
            queue = PROVE_QUEUE
            if job is not None and job.model_id and self._served(job.model_id):
                queue = model_queue(job.model_id)
        try:
            self.app.send_task(TASK, args=[job_id], queue=queue)
        except Exception as exc:  # kombu's connection errors: the job stays queued, the janitor sends it again
            raise QueueUnavailable(f"could not queue job {job_id} on Redis: {exc}", job_id=job_id) from None

    def watch(self, job_id: str) -> Future[CallRow | None]:
        return poll_watch(self.calls, job_id, 0.02, self._stop)

    def listen(self, job_id: str, events: Events) -> threading.Event:
        """The events a worker publishes for ``job_id`` (``calls/events.py``), read from Redis."""
        return Listener(self.redis, job_id, events, self.settings.queue.proof_timeout_s + 300).done

    def depth(self) -> int:
        try:
            names = [PROVE_QUEUE, COMPILE_QUEUE, *(k.decode() for k in self.redis.scan_iter(f"{PROVE_QUEUE}.*"))]
            return sum(int(self.redis.llen(name)) for name in names)
        except Exception:  # a scrape must not fail: Redis is down (health says so)
            return 0

    def workers(self) -> list[dict[str, Any]]:
        found = []
        for key in self.redis.scan_iter(f"{WORKER_KEY}*"):
            raw = self.redis.get(key)
            if raw:
                found.append(json.loads(raw))
        return found

    def running(self) -> bool:
        """The node's side of the engine runs (its janitor); the workers are other processes (``health``)."""
        return self._janitor is not None and self._janitor.is_alive()

    def health(self) -> QueueHealth:
        try:
            self.redis.ping()
            workers = self.workers()
        except Exception as exc:
            return QueueHealth("celery", 0, 0, 0, False, f"Redis does not answer: {exc}")
        warm = sum(1 for w in workers if w.get("warm"))
        return QueueHealth("celery", len(workers), warm, self.depth(), bool(workers),
                           "" if workers else "no worker heartbeats: start 'proofmarket worker'")

    def close(self) -> None:
        self._stop.set()
        if self._janitor is not None:
            self._janitor.join(30)
        self._janitor = None

    def sweep(self) -> int:
        """Re-queue running jobs whose worker stopped heartbeating (fail them after MAX_ATTEMPTS runs), and
        send again queued jobs the broker may have lost. Returns how many jobs were touched."""
        touched = 0
        now = utcnow()
        for job in self.calls.active(CallStatus.RUNNING, CallStatus.QUEUED):
            started = job.started_at or job.created_at
            if started.tzinfo is None:
                started = started.replace(tzinfo=now.tzinfo)
            age = (now - started) / timedelta(seconds=1)
            if job.status == CallStatus.RUNNING:
                if age < GRACE_S or self.redis.exists(RUNNING_KEY + job.id):
                    continue
                if job.attempts >= MAX_ATTEMPTS:
                    if self.calls.failed(job.id, "worker_lost", f"the workers running this job stopped {job.attempts} "
                                                               "times; nothing was settled", only=CallStatus.RUNNING):
                        self.runner.release(job)
                elif self.calls.requeue(job.id):
                    log.warning("job %s: its worker is gone; queued again", job.id)
                    self.submit(CallKind(job.kind), job.id)
                touched += 1
            elif age > RESEND_S and time.monotonic() - self._resent.get(job.id, 0.0) > RESEND_S:
                self._resent[job.id] = time.monotonic()  # waiting long: the broker may have lost its message
                self.submit(CallKind(job.kind), job.id)
                touched += 1
        live = {job.id for job in self.calls.active(CallStatus.QUEUED)}
        self._resent = {k: v for k, v in self._resent.items() if k in live}
        return touched

    def _janitor_loop(self) -> None:
        while not self._stop.wait(3.0):
            try:
                self.sweep()
            except Exception:
                log.warning("queue janitor: sweep failed (will try again)", exc_info=True)

    def _served(self, model_id: str) -> bool:
        try:
            return bool(self.redis.exists(SERVES_KEY + model_id))
        except Exception:
            return False


class Heartbeat:
    """A worker's heartbeats in Redis: itself (name, pid, warm prover, models) and the job it runs."""

    def __init__(self, client: Any, name: str, models: list[str], info: dict[str, Any]) -> None:
        self.client, self.name, self.models, self.info = client, name, models, info
        self.job: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="proofmarket-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        doc = {"name": self.name, **self.info, "job": self.job, "at": time.time()}
        pipe = self.client.pipeline()
        pipe.set(WORKER_KEY + self.name, json.dumps(doc), ex=HEARTBEAT_TTL_S)
        for model_id in self.models:
            pipe.set(SERVES_KEY + model_id, self.name, ex=HEARTBEAT_TTL_S)
        if self.job is not None:
            pipe.set(RUNNING_KEY + self.job, self.name, ex=HEARTBEAT_TTL_S)
        pipe.execute()

    def running(self, job_id: str | None) -> None:
        previous, self.job = self.job, job_id
        if previous is not None and job_id is None:
            self.client.delete(RUNNING_KEY + previous)
        self.beat()

    def stop(self) -> None:
        self._stop.set()
        self.client.delete(WORKER_KEY + self.name)

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception:
                log.warning("worker heartbeat failed (Redis?)", exc_info=True)
