"""Proofs run in a separate process: EZKL holds the GIL for the whole proof, and a proof that hangs
or crashes must not take the caller with it.

``ProofWorker`` keeps one warm child process (spawned, so no inherited locks or threads; it dies with
the node, see ``lifeline``) and sends it one task at a time over a pipe. On a timeout the child is
killed and the call raises ``ProofTimeout``; if the child dies the call raises ``ProvingError``. The
next call starts a fresh child. ``prove_task`` is what runs inside the child: witness, proof,
self-verification. A task that fails with anything but the error tree is logged whole in the child
(stderr) and answered with its code and one sentence: no traceback or temp path leaves the process.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from proofmarket.core import lifeline
from proofmarket.core.errors import ProofMarketError, ProofTimeout, ProvingError

DEFAULT_TIMEOUT_S = 600.0
log = logging.getLogger(__name__)


def prove_task(paths: dict[str, str]) -> dict[str, Any]:
    """witness -> prove -> verify, timed. Runs in the worker process."""
    from proofmarket.systems.ezkl import ezkl_calls

    timings: dict[str, float] = {}
    start = time.perf_counter()
    witness = ezkl_calls.gen_witness(paths["input"], paths["compiled"], paths["witness"], paths["vk"],
                                     paths["srs"])
    timings["witness_s"] = time.perf_counter() - start
    start = time.perf_counter()
    proof = ezkl_calls.prove(paths["witness"], paths["compiled"], paths["pk"], paths["proof"], paths["srs"])
    timings["prove_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ezkl_calls.verify(paths["proof"], paths["settings"], paths["vk"], paths["srs"])
    timings["verify_s"] = time.perf_counter() - start
    calldata = ezkl_calls.encode_evm_calldata(paths["proof"], paths["calldata"])
    return {"proof": proof, "outputs": witness["outputs"], "calldata": calldata.hex(), "timings": timings}


def witness_task(paths: dict[str, str]) -> dict[str, Any]:
    """The witness alone (no proof: milliseconds where a proof takes seconds). Runs in the worker process: a failing
    batch finds the call whose witness fails with it (``prover.py``)."""
    from proofmarket.systems.ezkl import ezkl_calls

    witness = ezkl_calls.gen_witness(paths["input"], paths["compiled"], paths["witness"], paths["vk"],
                                     paths["srs"])
    return {"outputs": witness["outputs"]}


def warm_task(_: Any) -> str:
    """Load EZKL (about 0.6 s) so the first proof does not pay for it. Runs in the worker process."""
    from proofmarket.systems.ezkl import ezkl_calls

    return ezkl_calls.EZKL_VERSION


def threads_task(_: Any) -> str | None:
    """The EZKL (rayon) threads this process proves with, as set at its start (None: every core)."""
    from proofmarket.core.threads import threads_in_use

    return threads_in_use()


TASKS = {"prove": prove_task, "witness": witness_task, "warm": warm_task, "threads": threads_task}


def _serve(conn: Connection, parent_pid: int | None = None, threads: int | None = None) -> None:
    from proofmarket.core.threads import use_threads

    use_threads(threads)  # before EZKL starts its pool
    if parent_pid is not None:
        lifeline.bind_to_parent(parent_pid)
    while True:
        try:
            name, arg = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", TASKS[name](arg)))
        except ProofMarketError as exc:
            conn.send(("error", (type(exc).__name__, exc.message)))
        except Exception as exc:  # anything else is a bug in the task: the detail goes to the log only
            log.error("prover task %s failed", name, exc_info=True)
            conn.send(("error", ("ProvingError", f"the prover failed unexpectedly ({type(exc).__name__})")))


class ProofWorker:
    """One warm prover process; thread-safe (calls are serialised)."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, threads: int | None = None) -> None:
        self.timeout_s, self.threads = timeout_s, threads
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._ready = False  # the child has EZKL loaded (warmed up, or it ran a task)

    def _ensure(self) -> Connection:
        if self._proc is None or not self._proc.is_alive():
            parent, child = self._ctx.Pipe()
            self._proc = self._ctx.Process(target=_serve, args=(child, os.getpid(), self.threads), daemon=True,
                                           name="proofmarket-prover")
            lifeline.start(self._proc)
            child.close()
            self._conn = parent
        assert self._conn is not None
        return self._conn

    def run(self, task: str, arg: Any, timeout_s: float | None = None) -> Any:
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        with self._lock:
            conn = self._ensure()
            conn.send((task, arg))
            if not conn.poll(timeout):
                self._kill()
                raise ProofTimeout(f"the proof took longer than {timeout:.0f} s and was stopped")
            try:
                status, payload = conn.recv()
            except (EOFError, OSError) as exc:
                code = self._proc.exitcode if self._proc is not None else None
                self._kill()
                raise ProvingError(f"the prover process died (exit code {code})") from exc
        self._ready = True  # it answered: EZKL is loaded
        if status == "ok":
            return payload
        return _rebuild(*payload)

    def warm(self, timeout_s: float = 120.0) -> None:
        """Start the child process and load EZKL in it now rather than on the first proof."""
        self.run("warm", None, timeout_s)

    def prove(self, paths: Mapping[str, Path | str], timeout_s: float | None = None) -> dict[str, Any]:
        return dict(self.run("prove", {k: str(v) for k, v in paths.items()}, timeout_s))

    def witness(self, paths: Mapping[str, Path | str], timeout_s: float | None = None) -> dict[str, Any]:
        return dict(self.run("witness", {k: str(v) for k, v in paths.items()}, timeout_s))

    def _kill(self) -> None:
        self._ready = False
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._proc, self._conn = None, None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._proc is not None and self._proc.pid is not None:  # a process that never started: no join
                self._proc.join(2)
            self._kill()

    @property
    def ready(self) -> bool:
        """The child process is alive with EZKL loaded: the next proof starts at once."""
        return self._ready and self.pid is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None


class InlineProofWorker(ProofWorker):
    """Runs the tasks in the calling process: for one-shot commands (``proofmarket prove``), where a second
    process would only add its start-up and a second EZKL import to the one proof. No time limit is
    enforced (the command is stopped with Ctrl-C); errors outside the tree become ``ProvingError``."""

    def run(self, task: str, arg: Any, timeout_s: float | None = None) -> Any:
        try:
            result = TASKS[task](arg)
        except ProofMarketError:
            raise
        except Exception as exc:
            log.error("prover task %s failed", task, exc_info=True)
            raise ProvingError(f"the prover failed unexpectedly ({type(exc).__name__})") from exc
        self._ready = True
        return result

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def pid(self) -> int | None:
        return os.getpid()

    def close(self) -> None:
        self._ready = False


def _rebuild(name: str, message: str) -> Any:
    from proofmarket.core import errors
    cls = getattr(errors, name, ProvingError)
    if not (isinstance(cls, type) and issubclass(cls, ProofMarketError)):
        cls = ProvingError
    raise cls(message)
