"""The prover process: timeouts and crashes fail the call cleanly and the next call works."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from proofmarket.core.errors import ProofTimeout, ProvingError
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.compiler import CompileResult
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.worker import ProofWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def own_prover(prover: EzklProver) -> EzklProver:
    return EzklProver(prover.store, prover.work_dir, ProofWorker())


def test_timeout_kills_the_proof_and_the_next_proof_works(own_prover, mlp: CompileResult, mlp_input) -> None:
    before = _bundles(own_prover.store)
    with pytest.raises(ProofTimeout):
        own_prover.prove(mlp.model_id, mlp_input, timeout_s=0.001)
    assert _bundles(own_prover.store) == before  # nothing stored for the failed job
    result = own_prover.prove(mlp.model_id, mlp_input)
    assert own_prover.verify(result.bundle).valid
    own_prover.close()


def test_a_killed_worker_fails_the_job_with_a_clear_error(own_prover, mlp: CompileResult, mlp_input,
                                                         monkeypatch) -> None:
    own_prover.prove(mlp.model_id, mlp_input)  # warm: the worker process exists
    worker = own_prover.worker
    pid = worker.pid
    assert pid is not None
    ensure = worker._ensure
    # the kill lands once the task is sent and before any answer: the worker provably holds the job
    monkeypatch.setattr(worker, "_ensure", lambda: _KillAfterSend(ensure(), pid))
    before = _bundles(own_prover.store)
    with pytest.raises(ProvingError, match="died"):
        own_prover.prove(mlp.model_id, mlp_input, timeout_s=30)
    assert _bundles(own_prover.store) == before  # nothing stored for the failed job
    monkeypatch.setattr(worker, "_ensure", ensure)
    assert own_prover.verify(own_prover.prove(mlp.model_id, mlp_input).bundle).valid
    assert worker.pid != pid  # the next proof ran in a fresh process
    own_prover.close()


class _KillAfterSend:
    """The worker's pipe, killing the worker right after a task is sent (and waiting until it is gone)."""

    def __init__(self, conn: Any, pid: int) -> None:
        self._conn, self._pid = conn, pid

    def send(self, message: Any) -> None:
        self._conn.send(message)
        os.kill(self._pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(self._pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and gone
        os.kill(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        return False
    return True


def _bundles(store: LocalStore) -> int:
    return sum(1 for _ in store.root.rglob("*") if _.is_file())


def test_warm_starts_the_process_before_the_first_proof(own_prover, mlp: CompileResult, mlp_input) -> None:
    assert own_prover.worker.pid is None and not own_prover.ready
    own_prover.warm()
    pid = own_prover.worker.pid
    assert pid is not None and own_prover.ready
    own_prover.prove(mlp.model_id, mlp_input)
    assert own_prover.worker.pid == pid  # the proof ran in the warmed process
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while own_prover.ready:  # a dead process is not ready (what /health counts)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    own_prover.prove(mlp.model_id, mlp_input)  # the next proof starts a fresh one
    assert own_prover.ready and own_prover.worker.pid != pid
    own_prover.close()


def test_a_prover_process_proves_with_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local queue's provers split the machine (cores // prover processes: bench/cores.md measured more processes
    with fewer threads each faster); PROOFMARKET_PROVER_THREADS sets it; an operator's RAYON_NUM_THREADS wins."""
    from proofmarket.core.settings import Settings

    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert Settings(prover_workers=4).queue.threads_per_prover() == 4
    assert Settings(prover_workers=32).queue.threads_per_prover() == 1
    assert Settings(prover_workers=2, prover_threads=3).queue.threads_per_prover() == 3
    assert Settings(queue="celery").queue.threads_per_prover() is None  # a celery worker: EZKL's default
    worker = ProofWorker(threads=3)
    try:
        assert worker.run("threads", None, 60) == "3"
    finally:
        worker.close()
    monkeypatch.setenv("RAYON_NUM_THREADS", "5")
    worker = ProofWorker(threads=3)
    try:
        assert worker.run("threads", None, 60) == "5"
    finally:
        worker.close()


def test_closing_a_worker_whose_process_never_started_is_harmless() -> None:
    """A process whose start failed (spawned from a child still bootstrapping, out of resources) is left unstarted:
    closing the worker neither joins it (multiprocessing asserts on that) nor raises."""
    worker = ProofWorker()
    worker._proc = worker._ctx.Process(target=print)  # made, never started
    worker.close()
    assert worker._proc is None and worker.pid is None
