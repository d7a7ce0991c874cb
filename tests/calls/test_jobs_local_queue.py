"""The local queue and the runner: failures recorded with their code, workers that survive bugs, watchers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from jobs_helpers import FailingProver, NeverSettle, local_queue, new_job, repo, workers
from prometheus_client import CollectorRegistry

from proofmarket.calls import CallMetrics, CallRunner, LocalCallQueue
from proofmarket.core.errors import WitnessError
from proofmarket.core.settings import Settings
from proofmarket.db import CallKind, CallRepo, CallStatus, ModelRepo
from proofmarket.store import LocalStore


def build(tmp_path: Path, prover: FailingProver) -> tuple[LocalCallQueue, CallRepo, NeverSettle, CollectorRegistry]:
    jobs, settle, registry = repo(tmp_path), NeverSettle(), CollectorRegistry()
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    runner = CallRunner(settings, jobs, ModelRepo(jobs.db), LocalStore(tmp_path / "store"), settle,
                        CallMetrics(registry))
    return local_queue(runner, jobs, workers(prover)), jobs, settle, registry


def test_a_failed_proof_is_recorded_with_its_code_and_nothing_is_settled(tmp_path: Path) -> None:
    queue, jobs, settle, registry = build(tmp_path, FailingProver(WitnessError("the input overflows the circuit")))
    job = jobs.create(new_job(nonce="n", payment={"nonce": "n", "amount_atomic": "1"}))
    queue.start()
    try:
        done = queue.watch(job.id)
        queue.submit(CallKind.PROVE, job.id)
        done.result(timeout=10)
    finally:
        queue.close()
    failed = jobs.get(job.id)
    assert failed is not None and failed.status == CallStatus.FAILED and failed.error_code == "witness_failed"
    assert failed.attempts == 1 and settle.calls == 0 and settle.released == ["n"]
    assert registry.get_sample_value("proofmarket_job_failures_total",
                                     {"kind": "prove", "code": "witness_failed"}) == 1.0


def test_a_bug_in_a_job_does_not_kill_the_worker(tmp_path: Path) -> None:
    queue, jobs, _, _ = build(tmp_path, FailingProver(KeyError("oops")))
    first, second = jobs.create(new_job(1)), jobs.create(new_job(2))
    queue.start()
    try:
        watches = [queue.watch(first.id), queue.watch(second.id)]
        queue.submit(CallKind.PROVE, first.id)
        queue.submit(CallKind.PROVE, second.id)
        for w in watches:
            w.result(timeout=10)
    finally:
        queue.close()
    for job_id in (first.id, second.id):
        row = jobs.get(job_id)
        assert row is not None and row.error_code == "internal_error" and "KeyError" in (row.error_message or "")


def test_a_lost_database_connection_fails_no_job_and_releases_nothing(tmp_path: Path) -> None:
    """The database went away under a call (a PostgreSQL restart cut its connection): that is not the call's
    failure. It is left running for the engine's recovery (a worker's janitor queues it again), its payment held."""
    from sqlalchemy.exc import OperationalError

    lost = OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"),
                            connection_invalidated=True)  # what SQLAlchemy raises for a broken connection
    prover = FailingProver(lost)
    queue, jobs, settle, registry = build(tmp_path, prover)
    job = jobs.create(new_job(nonce="n", payment={"nonce": "n", "amount_atomic": "1"}))
    queue.start()
    try:
        queue.submit(CallKind.PROVE, job.id)
        deadline = time.monotonic() + 10
        while prover.calls == 0 or registry.get_sample_value("proofmarket_jobs_running") != 0.0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)  # past the step's end: a failure would be written by now
    finally:
        queue.close()
    row = jobs.get(job.id)
    assert row is not None and row.status == CallStatus.RUNNING and row.error_code is None
    assert settle.released == [] and settle.calls == 0


def test_depth_and_watchers(tmp_path: Path) -> None:
    gate = threading.Event()
    queue, jobs, _, registry = build(tmp_path, FailingProver(WitnessError("no"), gate=gate))
    a, b, c = (jobs.create(new_job(i)) for i in range(3))
    for job in (a, b, c):
        queue.submit(CallKind.PROVE, job.id)
    assert queue.depth() == 3 and registry.get_sample_value("proofmarket_queue_depth") == 3.0
    queue.start()
    try:
        last = queue.watch(c.id)
        assert not last.done()
        gate.set()
        last.result(timeout=10)
        assert queue.depth() == 0
        assert queue.watch(a.id).done()  # a final job resolves at once
    finally:
        queue.close()


class WarmingProver(FailingProver):
    """Records its warm-up; the first one fails, which must not stop the worker."""

    def __init__(self) -> None:
        super().__init__(WitnessError("no"))
        self.warmed = threading.Event()

    def warm(self) -> None:
        self.warmed.set()
        raise RuntimeError("no EZKL here")


def test_each_prover_is_warmed_up_when_the_queue_starts_and_a_failed_warm_up_is_harmless(tmp_path: Path) -> None:
    prover = WarmingProver()
    queue, jobs, _, _ = build(tmp_path, prover)
    queue.start()
    try:
        assert prover.warmed.wait(5)  # before any job
        job = jobs.create(new_job(1))
        done = queue.watch(job.id)
        queue.submit(CallKind.PROVE, job.id)
        done.result(timeout=10)
    finally:
        queue.close()
    row = jobs.get(job.id)
    assert row is not None and row.error_code == "witness_failed"  # the worker went on to run the job


def test_an_engine_started_again_after_a_stop_runs_every_thread_again(tmp_path: Path) -> None:
    """A stop leaves no stop signal behind for the next start (an app whose lifespan runs again)."""
    queue, _, _, _ = build(tmp_path, FailingProver(WitnessError("unused")))
    try:
        for _ in range(2):
            queue.start()
            assert queue.running() and queue.alive_workers == len(queue.workers) + 1  # the provers and the compiler
            assert queue.depth() == 0
            queue.close()
            assert not queue.running()
        queue._compile_q.put("__stop__")  # a stop a dead thread left unread
        queue.start()
        time.sleep(0.2)  # long enough for a thread to read a stop left behind
        assert queue.alive_workers == len(queue.workers) + 1 and queue.depth() == 0
    finally:
        queue.close()


def test_a_call_queued_with_its_row_that_ended_before_its_turn_is_not_run(tmp_path: Path) -> None:
    """The engine starts a call from the row it was queued with (no read); the start is a conditional update, so a
    call that ended meanwhile (failed by another path) is not proven, and its watcher is told."""
    prover = FailingProver(WitnessError("never reached"))
    queue, jobs, _, _ = build(tmp_path, prover)
    job = jobs.create(new_job(7))
    queue.submit(CallKind.PROVE, job.id, job)  # queued, with its row as stored
    done = queue.watch(job.id)
    assert jobs.failed(job.id, "canceled", "ended elsewhere")
    queue.start()
    try:
        done.result(timeout=10)
    finally:
        queue.close()
    row = jobs.get(job.id)
    assert row is not None and row.status == CallStatus.FAILED and row.error_code == "canceled"
    assert prover.calls == 0 and row.attempts == 0


def test_a_request_that_watches_its_call_after_it_ended_gets_the_delivered_row_without_a_read(
        tmp_path: Path) -> None:
    """The race a loaded machine ran into: the whole call ended (its final row delivered, then the settler's
    row-less second delivery) before the request watched it; and a watcher taken by that second delivery."""
    queue, jobs, _, _ = build(tmp_path, FailingProver(WitnessError("no")))
    job = jobs.create(new_job(0))
    queue.submit(CallKind.PROVE, job.id, job)  # queued, not started: no worker runs here
    early = queue.watch(job.id)  # while queued: waits for the delivery, reads nothing
    assert jobs.failed(job.id, "witness", "no")
    row = jobs.get(job.id)
    assert row is not None and row.is_final
    reads: list[str] = []
    get = jobs.get
    jobs.get = lambda job_id: reads.append(job_id) or get(job_id)  # type: ignore[method-assign]
    try:
        queue._notify(job.id, row)  # the runner's delivery, with the final row
        queue._notify(job.id)  # the settler's second one, row-less
        assert early.result(timeout=5) is row
        late = queue.watch(job.id)  # after both: answered from the delivered row
        assert late.done() and late.result() is row
        queue._notify(job.id)  # another row-less delivery: nothing to take, nothing read
        assert reads == []
    finally:
        jobs.get = get  # type: ignore[method-assign]
        queue.close()
