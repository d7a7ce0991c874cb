"""An owner's model compiles in a child process: EZKL holds the GIL for seconds to minutes, and the node
must keep answering. The child is spawned per compile (no inherited threads or locks), can be stopped
when the node shuts down, and is killed after ``timeout_s``.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from proofmarket.config import Settings
from proofmarket.errors import ProofMarketError, ProofTimeout, ProvingError
from proofmarket.jobs.errors import JobInterrupted, rebuild_error

POLL_S = 0.25


def compile_job(settings: Settings, spec: dict[str, Any], timeout_s: float, stop: threading.Event) -> dict[str, Any]:
    """Compile ``spec`` (onnx_cid, samples, privacy, name) in a child; return ``{model_id, logrows}``."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, settings, spec), daemon=True, name="proofmarket-compile")
    proc.start()
    child.close()
    try:
        status, payload = _wait(parent, proc, timeout_s, stop)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    if status == "ok":
        return dict(payload)
    raise rebuild_error(*payload)


def _wait(conn: Connection, proc: Any, timeout_s: float, stop: threading.Event) -> tuple[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not conn.poll(POLL_S):
        if stop.is_set():
            raise JobInterrupted("the node stopped while this model was compiling")
        if time.monotonic() > deadline:
            raise ProofTimeout(f"the compile took longer than {timeout_s:.0f} s and was stopped")
        if not proc.is_alive() and not conn.poll(0):
            raise ProvingError(f"the compiler process died (exit code {proc.exitcode})")
    try:
        status, payload = conn.recv()
    except (EOFError, OSError) as exc:
        raise ProvingError(f"the compiler process died (exit code {proc.exitcode})") from exc
    return status, payload


def _child(conn: Connection, settings: Settings, spec: dict[str, Any]) -> None:
    try:
        conn.send(("ok", _compile(settings, spec)))
    except ProofMarketError as exc:
        conn.send(("error", (exc.code, exc.message)))
    except Exception as exc:  # a bug, not a refusal: report it whole
        conn.send(("error", ("proving_failed", f"the compile failed: {type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _compile(settings: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    from proofmarket.workspace import Workspace
    from proofmarket.zk.profile import PrivacyProfile

    ws = Workspace(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="proofmarket-upload-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            shutil.copyfile(ws.store.path(spec["onnx_cid"]), onnx_path)
            result = ws.compile(onnx_path, spec["samples"], profile=PrivacyProfile.parse(spec["privacy"]),
                                name=spec["name"])
        return {"model_id": result.model_id, "logrows": result.manifest.logrows}
    finally:
        ws.close()
