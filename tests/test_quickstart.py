"""docs/quickstart.md runs as written: its shell block (a devnet, the market deployed, the sample compiled and
registered, a paid node started) in a fresh home, then its Python block buys one call from that node with the SDK.

Only the node's port is the test's (``PROOFMARKET_API_PORT`` and the URL in the Python block): 8402 may be taken."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import ROOT, runnable_blocks
from health_wait import wait_healthy

pytestmark = pytest.mark.slow
PAGE = ROOT / "docs/quickstart.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    blocks = runnable_blocks(PAGE)
    [shell] = [code for lang, code in blocks if lang == "sh"]
    [python] = [code for lang, code in blocks if lang == "python"]
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}", PROOFMARKET_API_PORT=str(port),
               HOME=str(tmp_path))
    log = tmp_path / "quickstart.log"  # a file, not a pipe: the node the block leaves running keeps it open
    with log.open("w") as sink:
        started = subprocess.Popen(["bash", "-euo", "pipefail", "-c", shell], cwd=tmp_path, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started.wait(timeout=600)
        out = log.read_text()
        assert started.returncode == 0, out[-4000:]
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, timeout_s=120, pause_s=0.5, what="the quickstart's node")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {log.read_text()[-3000:]}") from None
        ran = subprocess.run([sys.executable, "-c", python.replace("http://127.0.0.1:8402", url)], cwd=tmp_path,
                             env=env, text=True, capture_output=True, timeout=300)
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
        lines = ran.stdout.strip().splitlines()
        assert lines[0].startswith("[[") and lines[1].endswith("checks passed") and int(lines[1].split()[0]) >= 5
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.pid, signal.SIGTERM)  # the node the block started in the background
        subprocess.run([str(Path(bin_dir) / "proofmarket"), "chain", "down"], cwd=tmp_path, capture_output=True,
                       env={**env, "PROOFMARKET_HOME": str(tmp_path / "pm-home")}, timeout=60)
