"""A consumer signs from a keystore (``--keystore``); a plain key in the environment pays on the devnet only
(issue 40 item 3)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from proofmarket.chain.keystore import write_keystore
from proofmarket.cli.infer_cmd import paying_account
from proofmarket.cli.main import app


def _announcing(chain_id: int) -> Iterator[str]:
    doc = json.dumps({"chain": {"chain_id": chain_id}}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/.well-known/ai-service.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(doc)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def sepolia_node() -> Iterator[str]:
    yield from _announcing(84532)


@pytest.fixture
def devnet_node() -> Iterator[str]:
    yield from _announcing(31337)


def test_a_plain_consumer_key_is_refused_off_the_devnet(sepolia_node: str, tmp_path: Path) -> None:
    inp = tmp_path / "in.json"
    inp.write_text('{"input_data": [[1.0]]}')
    env = {"PROOFMARKET_HOME": str(tmp_path), "PROOFMARKET_CONSUMER_KEY": Account.create().key.hex()}
    result = CliRunner().invoke(app, ["infer", "m", "--input", str(inp), "--node", sepolia_node], env=env)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "devnet only" in text and "--keystore" in text and "84532" in text


def test_the_keystore_signs_and_the_plain_key_pays_on_the_devnet(devnet_node: str, sepolia_node: str,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    consumer = Account.create()
    password = tmp_path / "password"
    password.write_text("correct horse\n")
    password.chmod(0o600)
    monkeypatch.setenv("PROOFMARKET_HOME", str(tmp_path))
    monkeypatch.setenv("PROOFMARKET_KEYSTORE_PASSWORD_FILE", str(password))
    write_keystore(tmp_path / "keys" / "consumer.json", consumer.key, "correct horse", iterations=2**4)
    assert paying_account(sepolia_node, "UNSET_VARIABLE", False, "consumer").address == consumer.address
    monkeypatch.setenv("SOME_KEY", consumer.key.hex())
    assert paying_account(devnet_node, "SOME_KEY", False, None).address == consumer.address
