"""``proofmarket node`` serves the API with uvicorn on a real socket and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proofmarket.cli.node_cmd import DEFAULT_PRICE_ATOMIC, parse_model_option
from proofmarket.core.errors import UsageError

# cli/main.py gets the one-line hook; until then a bare Typer app with the command stands in for it
RUN_NODE = ("import typer; from proofmarket.cli.node_cmd import register; "
            "app = typer.Typer(); register(app); app.command('noop')(lambda: None); app()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_parse_model_option() -> None:
    assert parse_model_option("bafkreiabc") == ("bafkreiabc", DEFAULT_PRICE_ATOMIC)
    assert parse_model_option("bafkreiabc=250") == ("bafkreiabc", 250)
    with pytest.raises(UsageError):
        parse_model_option("bafkreiabc=0.25")


@pytest.mark.slow
def test_node_serves_and_stops(node_home: Path, mlp_id: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    env |= {"PROOFMARKET_HOME": str(node_home), "PROOFMARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'node.db'}",
            "PROOFMARKET_PROVER_WORKERS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUN_NODE, "node", "--port", str(port), "--model", f"{mlp_id}=5000",
                             "--log-level", "info"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        health = _wait_up(f"http://127.0.0.1:{port}/health", proc)
        assert health["status"] == "ok"
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["models"]
        assert [(m["id"], m["price"]["atomic"]) for m in models] == [(mlp_id, "5000")]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    # uvicorn shuts down gracefully (lifespan: workers stopped), then re-raises the signal it caught
    assert "Application shutdown complete" in output, output
    assert proc.returncode in (0, -signal.SIGTERM), output


def _wait_up(url: str, proc: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            body: dict[str, object] = httpx.get(url, timeout=2).json()
            return body
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within 60 s")
