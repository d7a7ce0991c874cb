"""An owner's model compiles in a child process: EZKL holds the GIL for seconds to minutes, and the node
must keep answering. The child is spawned per compile (no inherited threads or locks), can be stopped
when the node shuts down, is killed after ``timeout_s``, dies with the node (``zk.lifeline``), and runs
under a memory cap (``PROOFMARKET_COMPILE_MEMORY_MB``, RLIMIT_DATA: the heap and every private writable
mapping, inherited by its own children such as solc; unlike RLIMIT_AS it leaves address-space
reservations alone, which V8's wasm needs by the gigabyte): a model that needs more fails with
``compile_out_of_memory`` instead of taking the machine's memory. A failure outside the error tree
is logged whole in the child and answered with its code and one sentence (no traceback, no temp path).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from proofmarket.core import lifeline
from proofmarket.core.errors import (
    CompileOutOfMemory,
    JobInterrupted,
    ProofMarketError,
    ProofTimeout,
    ProvingError,
    from_code,
)
from proofmarket.core.settings import Settings

POLL_S = 0.25
MiB = 1024 * 1024
log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/proofmarket


def compile_job(settings: Settings, spec: dict[str, Any], timeout_s: float, stop: threading.Event,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compile ``spec`` (onnx_cid, samples, privacy, name) in a child; return ``{model_id, logrows}``. The
    child's steps (with their ETAs) go to ``progress`` as they happen."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, settings, spec, os.getpid()), daemon=True,
                       name="proofmarket-compile")
    lifeline.start(proc)
    child.close()
    try:
        status, payload = _wait(parent, proc, timeout_s, stop, settings.limits.compile_memory_mb, progress)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    if status == "ok":
        return dict(payload)
    raise from_code(*payload)


def _wait(conn: Connection, proc: Any, timeout_s: float, stop: threading.Event,
          memory_mb: int, progress: Callable[[str], None] | None = None) -> tuple[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        while not conn.poll(POLL_S):
            if stop.is_set():
                raise JobInterrupted("the node stopped while this model was compiling")
            if time.monotonic() > deadline:
                raise ProofTimeout(f"the compile took longer than {timeout_s:.0f} s and was stopped")
            if not proc.is_alive() and not conn.poll(0):
                raise _died(proc, memory_mb)
        try:
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            proc.join(5)
            raise _died(proc, memory_mb) from exc
        if status != "progress":
            return status, payload
        if progress is not None:
            try:
                progress(str(payload))
            except Exception:  # a step not shown is not a failed compile
                log.warning("could not record a compile step", exc_info=True)


def _died(proc: Any, memory_mb: int) -> ProofMarketError:
    """The child answers every failure it can; under a memory cap, dying without an answer (a Rust abort on a
    failed allocation, or a MemoryError while answering) means it hit the cap."""
    if memory_mb and proc.exitcode:
        return _out_of_memory(memory_mb)
    return ProvingError(f"the compiler process died (exit code {proc.exitcode})")


def _out_of_memory(memory_mb: int) -> CompileOutOfMemory:
    return CompileOutOfMemory(f"the compile needed more than this node's {memory_mb} MB compile memory limit "
                              "(PROOFMARKET_COMPILE_MEMORY_MB)", limit_mb=memory_mb)


def limit_memory(memory_mb: int) -> None:
    """Cap this process's data memory (RLIMIT_DATA) at ``memory_mb`` MiB (0: no cap; never above the hard cap)."""
    if memory_mb <= 0:
        return
    import resource

    limit = memory_mb * MiB
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _child(conn: Connection, settings: Settings, spec: dict[str, Any], parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        lifeline.bind_to_parent(parent_pid)
    try:
        limit_memory(settings.limits.compile_memory_mb)
        conn.send(("ok", _compile(settings, spec, lambda step: conn.send(("progress", step)))))
    except ProofMarketError as exc:
        conn.send(("error", (exc.code, exc.message)))
    except MemoryError:
        conn.send(("error", (CompileOutOfMemory.code, _out_of_memory(settings.limits.compile_memory_mb).message)))
    except (ImportError, OSError, SyntaxError) as exc:  # a library not mapped under the cap is out of memory too
        if settings.limits.compile_memory_mb and _no_memory(exc):
            conn.send(("error", (CompileOutOfMemory.code, _out_of_memory(settings.limits.compile_memory_mb).message)))
        else:
            log.error("the compile of %s failed", spec.get("name"), exc_info=True)
            conn.send(("error", ("proving_failed", f"the compile failed unexpectedly ({type(exc).__name__})")))
    except Exception as exc:  # a bug, not a refusal: the detail goes to the log only
        log.error("the compile of %s failed", spec.get("name"), exc_info=True)
        conn.send(("error", ("proving_failed", f"the compile failed unexpectedly ({type(exc).__name__})")))
    finally:
        conn.close()


def _no_memory(exc: BaseException) -> bool:
    """An ENOMEM in disguise: a shared library that could not be mapped, an allocation refused by the kernel, or
    a module of this package that "does not parse" (the parser starved under the cap: the shipped sources parse,
    ruff and mypy in ``make lint`` parse every one of them)."""
    if isinstance(exc, SyntaxError):
        return bool(exc.filename) and Path(str(exc.filename)).resolve().is_relative_to(PACKAGE_DIR)
    text = str(exc).lower()
    return getattr(exc, "errno", None) == 12 or any(
        sign in text for sign in ("failed to map segment", "cannot map zero-fill pages", "cannot allocate memory"))


def _samples(ws: Any, spec: dict[str, Any]) -> Any:
    """The job's sample document: stored by the upload check (``samples_cid``), or inline (``samples``)."""
    if "samples_cid" in spec:
        import json

        return json.loads(ws.store.path(spec["samples_cid"]).read_bytes())
    return spec["samples"]


def _compile(settings: Settings, spec: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.workspace import Workspace

    ws = Workspace(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="proofmarket-upload-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            shutil.copyfile(ws.store.path(spec["onnx_cid"]), onnx_path)
            batching = bool((spec.get("catalog") or {}).get("batching"))  # the owner's word, in its signed entry
            domain = (spec.get("catalog") or {}).get("domain")  # the owner's word, in its signed entry
            result = ws.compile(onnx_path, _samples(ws, spec), profile=PrivacyProfile.parse(spec["privacy"]),
                                name=spec["name"], task=task_of_entry(spec), progress=progress,
                                batch_sizes=None if batching else (),
                                domain=json.dumps(domain) if isinstance(domain, dict) else domain)
        return {"model_id": result.model_id, "logrows": result.manifest.logrows}
    finally:
        ws.close()


def task_of_entry(spec: dict[str, Any]) -> str | None:
    """The task the owner stated in the listing's catalogue entry, as compile checks it: a classification or a
    regression; None (the compile looks for evidence) for any other task or none."""
    task = str((spec.get("catalog") or {}).get("task") or "").lower()
    if "classif" in task:
        return "classification"
    if "regress" in task or "forecast" in task:
        return "regression"
    return None
