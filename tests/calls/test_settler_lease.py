"""The node's settler of calls holds a lease when it finds proved calls in the database (the Celery engine's: one
node settles at a time, one settlement key, one nonce sequence). The lease is checked and renewed before every
settlement: when a settlement outlasts the lease and another node takes it over, the old holder settles nothing
more in that pass. A proved call handed over by the local engine is settled at once, and its waiters answered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from jobs_helpers import NeverSettle, ticket_json
from prometheus_client import CollectorRegistry

from proofmarket.calls import CallMetrics, CallRunner
from proofmarket.calls.celery_queue import CeleryCallQueue
from proofmarket.calls.redis_server import RedisServer, redis_server
from proofmarket.calls.settling import SETTLER_LEASE, CallSettler
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, CallRepo, CallStatus, Database, LeaseRepo, ModelRepo, NewCall
from proofmarket.db import leases as lease_table
from proofmarket.db.tables import utcnow
from proofmarket.store import LocalStore


class LeaseClock:
    """The lease table's clock, moved by the test: a settlement "takes" seconds on it without sleeping, so how
    loaded the machine is cannot change which lease has run out."""

    def __init__(self) -> None:
        self.now: datetime = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> LeaseClock:
    moved = LeaseClock()
    monkeypatch.setattr(lease_table, "utcnow", moved)
    return moved


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer | None]:
    with redis_server() as server:
        yield server


class SettlingRunner(CallRunner):
    """A runner whose settlement of a proved job is recorded (and may take a while, or do something meanwhile)."""

    during: Callable[[str], None] = staticmethod(lambda _job_id: None)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.settled: list[str] = []

    def run(self, job_id: str, systems: object, stop: threading.Event, events: object = None) -> None:
        self.during(job_id)
        if self.calls.settled(job_id, {"payment": {"settled_by": "node-a"}, "receipt": None}):
            self.settled.append(job_id)


def _proved_paid_jobs(calls: CallRepo, n: int, tag: str = "") -> list[str]:
    ids = []
    for i in range(n):
        job = calls.create(NewCall(CallKind.PROVE, {"input_data": [[float(i)]]}, f"h{tag}{i}", model_id="m",
                                  payment_nonce=f"n{tag}{i}", payment=ticket_json(f"n{tag}{i}"), rail="x402"))
        assert calls.start(job.id) is not None
        assert calls.proved(job.id, bundle_cid=f"cid{i}", result={}, final=False)
        ids.append(job.id)
        time.sleep(0.01)  # distinct created_at: the pass goes oldest first
    return ids


def _settler(db: Database, tmp_path: Path, lease_s: float) -> tuple[CallSettler, SettlingRunner, CallRepo, LeaseRepo]:
    settings = Settings(_env_file=None, home=tmp_path, database_url=db.url)  # type: ignore[call-arg]
    jobs, leases = CallRepo(db), LeaseRepo(db)
    runner = SettlingRunner(settings, jobs, ModelRepo(db), LocalStore(tmp_path / "store"), NeverSettle(),
                            CallMetrics(CollectorRegistry()))
    settler = CallSettler(runner, jobs, follow_s=60.0, scan=True, leases=leases)
    settler.lease_s = lease_s
    return settler, runner, jobs, leases


def test_a_lease_taken_over_mid_pass_stops_the_old_holder(db: Database, tmp_path: Path, clock: LeaseClock) -> None:
    settler, runner, jobs, leases = _settler(db, tmp_path, 0.5)
    first, *rest = _proved_paid_jobs(jobs, 3)
    taken: list[bool] = []

    def slow_first_settlement(job_id: str) -> None:
        if job_id == first:  # outlasts node A's lease: node B takes it over meanwhile
            clock.advance(0.8)
            taken.append(leases.acquire(SETTLER_LEASE, "node-b", 30.0))

    runner.during = slow_first_settlement
    try:
        assert settler.tick() == 1  # the pass takes the lease, then loses it mid-way
        assert taken == [True] and runner.settled == [first]  # the settlement in hand finishes; no other starts
        assert [jobs.get(i).status for i in rest] == [CallStatus.PROVED, CallStatus.PROVED]  # type: ignore[union-attr]
        assert leases.holder(SETTLER_LEASE) == "node-b" and not settler.holds_lease()
        assert settler.tick() == 0 and runner.settled == [first]  # a new pass does not settle either
        leases.release(SETTLER_LEASE, "node-b")  # node B stops: node A takes the lease again and settles the rest
        assert settler.tick() == 2 and runner.settled == [first, *rest]
        assert leases.holder(SETTLER_LEASE) == settler.holder
    finally:
        settler.close()


def test_a_long_pass_keeps_renewing_the_lease(db: Database, tmp_path: Path, clock: LeaseClock) -> None:
    """Settlements that together outlast the lease: renewed before each one, so no other node can take it."""
    settler, runner, jobs, leases = _settler(db, tmp_path, 2.0)
    ids = _proved_paid_jobs(jobs, 4)
    refused: list[bool] = []

    def slow(_job_id: str) -> None:
        clock.advance(0.6)  # 4 x 0.6 s > the 2 s lease
        refused.append(not leases.acquire(SETTLER_LEASE, "node-b", 30.0))

    runner.during = slow
    try:
        assert settler.tick() == 4 and runner.settled == ids
        assert refused == [True] * 4 and leases.holder(SETTLER_LEASE) == settler.holder
    finally:
        settler.close()


def test_the_settler_runs_as_a_service_and_answers_a_handed_over_calls_waiters(db: Database, tmp_path: Path) -> None:
    """Started, it finds and settles the proved calls on its own; a call handed over is settled on a settle
    thread and its waiters are told; stopped, it finishes what it was handed."""
    settler, runner, jobs, _ = _settler(db, tmp_path, 30.0)
    settler.interval_s = 0.05
    found = _proved_paid_jobs(jobs, 2)
    delivered: list[str] = []
    settler.delivered.append(lambda job_id, _row: delivered.append(job_id))
    settler.start()
    try:
        deadline = time.monotonic() + 10
        while (len(runner.settled) < 2 or settler.health().passes < 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.settled == found and settler.health().running and settler.health().passes >= 1
    finally:
        settler.close()
    assert not settler.health().running
    handed = jobs.get(_proved_paid_jobs(jobs, 1, "handed")[0])
    assert handed is not None
    settler.hand(handed, None)  # stopped: settled here, at once (an engine stops before its settler)
    assert delivered == [handed.id]


def test_the_stuck_job_sweep_never_fails_a_job_proved_meanwhile(db: Database, redis: RedisServer | None,
                                                                 tmp_path: Path) -> None:
    """The sweep saw the job running with its worker gone, but the worker proved it before the sweep failed it:
    the proved job stays proved and goes to the settler (the caller gets the result it paid for, charged once)."""
    if redis is None:
        pytest.skip("redis-server is not installed")
    from datetime import timedelta

    from proofmarket.calls import celery_queue

    settings = Settings(_env_file=None, home=tmp_path, queue="celery", redis_url=redis.url,  # type: ignore[call-arg]
                        database_url=db.url)
    jobs = CallRepo(db)
    runner = SettlingRunner(settings, jobs, ModelRepo(db), LocalStore(tmp_path / "store"), NeverSettle(),
                            CallMetrics(CollectorRegistry()))
    queue = CeleryCallQueue(settings, jobs, runner)
    job = jobs.create(NewCall(CallKind.PROVE, {"input_data": [[1.0]]}, "stuck", model_id="m", payment_nonce="stuck",
                              payment=ticket_json("stuck"), rail="x402"))
    for _ in range(celery_queue.MAX_ATTEMPTS):  # its last allowed run
        jobs.requeue(job.id)
        assert jobs.start(job.id) is not None
    seen_running = jobs.get(job.id)
    assert seen_running is not None and seen_running.status == CallStatus.RUNNING
    seen_running.started_at = seen_running.started_at - timedelta(seconds=celery_queue.GRACE_S + 5)
    assert jobs.proved(job.id, bundle_cid="cid-stuck", result={}, final=False)  # the worker's last act
    original = jobs.active
    jobs.active = lambda *statuses: [seen_running] if CallStatus.RUNNING in statuses else original(*statuses)
    try:
        queue.sweep()
    finally:
        jobs.active = original  # type: ignore[method-assign]
        queue.close()
    after = jobs.get(job.id)
    assert after is not None and after.status == CallStatus.PROVED and after.error_code is None
    assert runner.settled == [] and job.id in {j.id for j in jobs.active(CallStatus.PROVED)}
