"""The node's own threads give way to its prover threads (and the prover processes those start) on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCENARIO = textwrap.dedent("""
    import json, os, subprocess, sys, threading
    from proofmarket.calls.local import PROVER_THREAD
    from proofmarket.node.priority import yield_to_provers

    go, done = threading.Event(), threading.Event()
    ids = {}
    def park(name):
        ids[name] = threading.get_native_id()
        go.wait()
        if name.startswith(PROVER_THREAD):  # a prover thread starts its prover process after the node yielded
            child = subprocess.run([sys.executable, "-c", "import os; print(os.nice(0))"], capture_output=True,
                                   text=True, check=True)
            ids["process"] = int(child.stdout)
        done.set() if name.startswith(PROVER_THREAD) else None
    threads = [threading.Thread(target=park, args=(n,), name=n) for n in (PROVER_THREAD + "0", "anyio-worker")]
    for t in threads: t.start()
    while len(ids) < 2: pass
    before = os.getpriority(os.PRIO_PROCESS, ids["anyio-worker"])
    raised = yield_to_provers(int(sys.argv[1]))
    again = yield_to_provers(int(sys.argv[1]))
    later = threading.Thread(target=lambda: ids.__setitem__("later", os.nice(0)), name="made-later")
    later.start(); later.join()
    nice = {n: os.getpriority(os.PRIO_PROCESS, ids[n]) for n in (PROVER_THREAD + "0", "anyio-worker")}
    go.set(); done.wait(30)
    print(json.dumps({"before": before, "raised": raised, "again": again, "nice": nice,
                      "main": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                      "process": ids.get("process"), "later": ids["later"]}))
""")


def _run(nice: int) -> dict:
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(nice)], capture_output=True, text=True, timeout=60,
                          check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_every_thread_but_the_provers_takes_the_niceness_once() -> None:
    seen = _run(10)
    base = seen["before"]
    assert seen["nice"]["anyio-worker"] == max(base, 10) and seen["main"] == max(base, 10)
    assert seen["nice"]["proofmarket-prover-0"] == base  # the prover thread keeps the node's niceness
    assert seen["process"] == base  # and so does the prover process it starts afterwards
    assert seen["raised"] >= 2 and seen["again"] == 0  # once: a thread already that nice is left alone
    assert seen["later"] == max(base, 10)  # a thread made afterwards inherits it from its maker


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_zero_leaves_every_thread_as_it_is() -> None:
    seen = _run(0)
    assert seen["raised"] == 0 and seen["nice"]["anyio-worker"] == seen["before"] == seen["main"]
