"""A prover or compile process dies with the node that started it (kill -9 of the node included).

Each case runs a small node stand-in in its own Python process: it starts a real worker process (a
``ProofWorker`` or the compile child) on a task that would run for minutes, prints the worker's pid,
and waits. The test kills the stand-in with SIGKILL (no cleanup runs) and expects the worker gone
within seconds, whether the kernel's parent-death signal kills it or, where that is unavailable, the
worker's own watch of its parent pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from proofmarket.core import lifeline

SRC = Path(__file__).resolve().parents[3] / "src"

# The stand-in's module is imported again in each spawned child (as __mp_main__), so its top level
# patches the child too: a task that sleeps, a compile that sleeps, and (FALLBACK=1) no prctl.
STAND_IN = textwrap.dedent('''
    import os, sys, threading, time
    from proofmarket.calls import compile_task
    from proofmarket.core import lifeline
    from proofmarket.systems.ezkl import worker

    def sleep_task(seconds):
        time.sleep(seconds)
        return "slept"

    def slow_compile(settings, spec, progress=None):
        print(os.getpid(), flush=True)
        time.sleep(120)
        return {"model_id": "never", "logrows": 0}

    worker.TASKS["sleep"] = sleep_task
    compile_task._compile = slow_compile
    if os.environ.get("FALLBACK") == "1":
        lifeline.set_parent_death_signal = lambda *a, **k: False

    if __name__ == "__main__":
        if sys.argv[1] == "prover":
            w = worker.ProofWorker()
            threading.Thread(target=w.run, args=("sleep", 120), daemon=True).start()
            while w.pid is None:
                time.sleep(0.01)
            print(w.pid, flush=True)
        else:
            from proofmarket.core.settings import Settings
            settings = Settings(_env_file=None, home=sys.argv[2])
            threading.Thread(target=compile_task.compile_job,
                             args=(settings, {"name": "m"}, 120, threading.Event()), daemon=True).start()
        time.sleep(300)
''')


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("fallback", ["0", "1"], ids=["pdeathsig", "parent-watch"])
@pytest.mark.parametrize("kind", ["prover", "compile"])
def test_a_worker_dies_when_its_node_is_killed(tmp_path: Path, kind: str, fallback: str) -> None:
    # Given a node stand-in whose worker process is busy on a long task
    script = tmp_path / "node_stand_in.py"
    script.write_text(STAND_IN)
    env = {**os.environ, "PYTHONPATH": str(SRC), "FALLBACK": fallback}
    node = subprocess.Popen([sys.executable, str(script), kind, str(tmp_path / "home")], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert node.stdout is not None
        worker_pid = int(node.stdout.readline())
        assert worker_pid != node.pid and alive(worker_pid)
        time.sleep(0.5)  # the worker is inside its task

        # When the node is killed with SIGKILL (nothing of it runs again)
        node.send_signal(signal.SIGKILL)
        node.wait(10)

        # Then the worker is gone within seconds, not when its task would have ended (minutes)
        deadline = time.monotonic() + 10
        while alive(worker_pid):
            assert time.monotonic() < deadline, f"the {kind} process {worker_pid} outlived its killed node"
            time.sleep(0.05)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(10)


def test_the_parent_watch_calls_back_once_the_parent_is_gone() -> None:
    died = threading.Event()
    not_my_parent = os.getppid() + 1_000_000  # never this process's parent: as if reparented already
    watch = threading.Thread(target=lifeline.watch_parent, args=(not_my_parent, died.set, 0.01))
    watch.start()
    watch.join(5)
    assert died.is_set()


def test_bind_to_parent_of_a_dead_parent_dies_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifeline, "set_parent_death_signal", lambda *a, **k: False)  # not on the test process
    died: list[bool] = []
    lifeline.bind_to_parent(os.getppid() + 1_000_000, on_death=lambda: died.append(True))
    assert died == [True]
