"""Run code on untrusted input in a capped child process: the node's own memory never holds what it parses.

A file from anyone (an uploaded ONNX model, its samples) is parsed by libraries that allocate as they go:
onnxruntime folds a ``ConstantOfShape`` of 2^33 floats before any size check runs, ``np.load`` inflates a zip
member whole. ``run`` calls a function in a child spawned for that call, with

    memory      RLIMIT_AS (the child's whole address space; an allocation past it fails in the child)
    CPU         RLIMIT_CPU (the kernel stops the child after that many CPU seconds)
    wall clock  the parent kills the child after ``wall_s``
    lifeline    the child dies with the process that started it (``core/lifeline``)

and at most ``MAX_PARALLEL`` such children at once on this process (others wait their turn). The function and
its arguments must be importable and picklable (a module-level function). What it returns comes back pickled;
a :class:`ProofMarketError` it raises comes back as the same code and message; a limit it hits comes back as
the error ``over_limit`` builds from :class:`LimitHit` (the caller names its own code, e.g. ``model_over_budget``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

from proofmarket.core import lifeline
from proofmarket.core.errors import ProofMarketError, from_code

MiB = 1024 * 1024
POLL_S = 0.05
MAX_PARALLEL = 2
log = logging.getLogger(__name__)
_slots = threading.BoundedSemaphore(MAX_PARALLEL)

Limit = Literal["memory", "cpu", "time"]


@dataclass(frozen=True)
class Limits:
    """The caps of one sandboxed call (0 turns a cap off; the wall clock is always on)."""

    memory_mb: int = 1024
    cpu_s: int = 30
    wall_s: float = 60.0


@dataclass(frozen=True)
class LimitHit:
    """Which cap stopped the child, with the caps it ran under."""

    limit: Limit
    limits: Limits

    def describe(self) -> str:
        if self.limit == "memory":
            return f"more than the {self.limits.memory_mb} MB memory limit"
        if self.limit == "cpu":
            return f"more than the {self.limits.cpu_s} s CPU-time limit"
        return f"longer than the {self.limits.wall_s:g} s time limit"


def run(fn: Callable[..., Any], *args: Any, limits: Limits,
        over_limit: Callable[[LimitHit], ProofMarketError]) -> Any:
    """``fn(*args)`` in a capped child (see the module docstring); raises what it raised, or ``over_limit(...)``."""
    with _slots:
        return _run(fn, args, limits, over_limit)


def _run(fn: Callable[..., Any], args: tuple[Any, ...], limits: Limits,
         over_limit: Callable[[LimitHit], ProofMarketError]) -> Any:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, limits, os.getpid()), daemon=True,
                       name="proofmarket-sandbox")
    lifeline.start(proc)
    child.close()
    try:
        answer = _wait(parent, proc, limits)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    kind, payload = answer
    if kind == "ok":
        return payload
    if kind == "limit":
        raise over_limit(LimitHit(payload, limits))
    code, message, details = payload
    raise from_code(code, message, details)


def _wait(conn: Connection, proc: Any, limits: Limits) -> tuple[str, Any]:
    deadline = time.monotonic() + limits.wall_s
    while not conn.poll(POLL_S):
        if time.monotonic() > deadline:
            return "limit", "time"
        if not proc.is_alive() and not conn.poll(0):
            return _died(proc, limits)
    try:
        return conn.recv()  # type: ignore[no-any-return]
    except (EOFError, OSError):
        proc.join(5)
        return _died(proc, limits)


def _died(proc: Any, limits: Limits) -> tuple[str, Any]:
    """Dead without an answer: the kernel's CPU limit (SIGXCPU, then SIGKILL), or an allocation that failed where
    nothing could answer (a native abort under the memory cap)."""
    proc.join(1)
    code = proc.exitcode
    if limits.cpu_s and code in (-24, -9):  # SIGXCPU at the soft limit, SIGKILL at the hard one
        return "limit", "cpu"
    if limits.memory_mb and code:
        return "limit", "memory"
    return "error", ("internal_error", f"the sandboxed check died (exit code {code})", {})


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...], limits: Limits,
           parent_pid: int) -> None:
    lifeline.bind_to_parent(parent_pid)
    try:
        _limit(limits)
        conn.send(("ok", fn(*args)))
    except ProofMarketError as exc:
        if _out_of_memory(exc) and limits.memory_mb:
            conn.send(("limit", "memory"))
        else:
            conn.send(("error", (exc.code, exc.message, _plain(exc.details))))
    except MemoryError:
        conn.send(("limit", "memory"))
    except Exception as exc:  # a library's own failure on a hostile file
        if limits.memory_mb and _out_of_memory(exc):
            conn.send(("limit", "memory"))
        else:
            log.warning("sandboxed %s failed: %s", getattr(fn, "__name__", fn), type(exc).__name__, exc_info=True)
            conn.send(("error", ("internal_error", f"the check failed unexpectedly ({type(exc).__name__})", {})))
    finally:
        conn.close()


def _limit(limits: Limits) -> None:
    import resource

    if limits.memory_mb > 0:
        _set(resource, resource.RLIMIT_AS, limits.memory_mb * MiB)
    if limits.cpu_s > 0:
        soft = limits.cpu_s
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard == resource.RLIM_INFINITY or hard > soft + 2:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 2))


def _set(resource: Any, which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _out_of_memory(exc: BaseException) -> bool:
    """A native allocation failure a library reports as its own exception (onnxruntime: ``std::bad_alloc``)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if isinstance(seen, MemoryError) or "bad_alloc" in text or "cannot allocate memory" in text \
                or "out of memory" in text or getattr(seen, "errno", None) == 12:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """Details that survive pickling as plain values."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
            for k, v in details.items()}
