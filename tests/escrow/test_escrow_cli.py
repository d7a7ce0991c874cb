"""``proofmarket request MODEL --input F --node URL``: escrow on chain, hand the input to a node, wait for it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from escrow_helpers import AppFactory, EscrowEnv, mlp_input
from typer.testing import CliRunner

from proofmarket.chain.types import RequestStatus
from proofmarket.cli.main import app as cli

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture
def node_url(make_app: AppFactory) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the node did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def _request(env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, dict]:
    monkeypatch.setenv("PROOFMARKET_RPC_URL", env.rpc_url)
    doc = tmp_path / "input.json"
    doc.write_text(json.dumps(mlp_input()))
    result = CliRunner().invoke(cli, ["request", env.public, "--input", str(doc), "--home", str(env.home), "--json",
                                      *args])
    return result.exit_code, json.loads(result.stdout)


def test_request_with_a_node_is_fulfilled_before_the_command_returns(env: EscrowEnv, node_url: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _request(env, tmp_path, monkeypatch, "--node", node_url, "--wait", "120")

    assert code == 0, out
    node = out["node"]
    assert node["status"] == "fulfilled" and node["request_id"] == out["request_id"] and node["bundle_cid"]
    assert node["settlement"]["status"] == "FULFILLED"
    assert env.market.market.get_request(out["request_id"]).status is RequestStatus.FULFILLED


def test_an_unreachable_node_names_the_request_left_in_escrow(env: EscrowEnv, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _request(env, tmp_path, monkeypatch, "--node", "http://127.0.0.1:1")

    assert code == 4 and out["ok"] is False
    assert out["error"]["code"] == "node_unavailable"
    request_id = out["error"]["details"]["request_id"]
    assert env.market.market.get_request(request_id).status is RequestStatus.OPEN  # still escrowed: refundable
