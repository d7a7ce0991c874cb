"""Wait for a server a test started to answer ``GET /health`` with 200: fails at once with the process's output when
it exits, and after ``timeout_s`` when it never answers."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_healthy(url: str, proc: subprocess.Popen[str] | subprocess.Popen[bytes] | None = None, *,
                 timeout_s: float = 90.0, pause_s: float = 0.2, what: str = "the server") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{what} exited ({proc.returncode}): "
                                 f"{out.decode(errors='replace') if isinstance(out, bytes) else out}"[-4000:])
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} did not answer {url}/health within {timeout_s:.0f} s"
        time.sleep(pause_s)
