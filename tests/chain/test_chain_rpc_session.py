"""The RPC session reads the environment's proxy and CA settings once, for its URL, and never per request."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from web3.types import RPCEndpoint

from proofmarket.chain.rpc_session import KeepAliveRequests, rpc_provider, rpc_session


def test_a_proxy_set_in_the_environment_still_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    session = rpc_session("https://rpc.example/v1")
    assert session.proxies.get("https") == "http://proxy.example:3128"
    assert session.trust_env is False  # requests reads nothing more from the environment on each request


def test_no_proxy_keeps_the_rpc_direct_and_a_ca_bundle_is_kept(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = rpc_session("http://127.0.0.1:8545")
    assert not session.proxies
    assert session.verify == str(bundle)


def test_a_later_change_to_the_environment_does_not_reach_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    session = rpc_session("https://rpc.example/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert "https" not in session.proxies


PENDING_WITHDRAWALS_ABI = [{"type": "function", "name": "pendingWithdrawals", "stateMutability": "view",
                            "inputs": [{"name": "channelId", "type": "bytes32"}],
                            "outputs": [{"name": "amount", "type": "uint128"},
                                        {"name": "initiatedAt", "type": "uint40"}]}]


def test_a_contract_is_built_once_per_address_and_abi() -> None:
    """Building a web3 contract hashes every function's selector: the client keeps one per (address, ABI)."""
    from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
    from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS

    from proofmarket.chain.client import ChainClient

    client = ChainClient("http://127.0.0.1:9")  # never asked: building a contract makes no request
    one = client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)
    assert client.contract(BATCH_SETTLEMENT_ADDRESS.lower(), BATCH_SETTLEMENT_ABI) is one
    narrow = client.contract(BATCH_SETTLEMENT_ADDRESS, PENDING_WITHDRAWALS_ABI)
    assert narrow is not one and narrow.address == one.address
    assert [f.fn_name for f in narrow.all_functions()] == ["pendingWithdrawals"]
    other = client.contract("0x" + "11" * 20, BATCH_SETTLEMENT_ABI)
    assert other is not one and other.address == "0x" + "11" * 20


def test_a_client_keeps_a_bounded_number_of_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived client (a node meeting many consumer contracts, an SDK verifying bundle after bundle with freshly
    loaded ABIs) keeps at most CONTRACTS_KEPT contracts: the oldest goes first."""
    from proofmarket.chain import client as client_module
    monkeypatch.setattr(client_module, "CONTRACTS_KEPT", 3)
    client = client_module.ChainClient("http://127.0.0.1:9")
    first = client.contract("0x" + "01" * 20, PENDING_WITHDRAWALS_ABI)
    for i in range(2, 6):
        client.contract("0x" + f"{i:02x}" * 20, PENDING_WITHDRAWALS_ABI)
    assert len(client._contracts) == 3
    assert client.contract("0x" + "05" * 20, PENDING_WITHDRAWALS_ABI) is client.contract("0x" + "05" * 20,
                                                                                        PENDING_WITHDRAWALS_ABI)
    assert client.contract("0x" + "01" * 20, PENDING_WITHDRAWALS_ABI) is not first  # made again after it went


def test_a_prepared_read_of_an_unreachable_chain_is_rpc_unavailable_and_counted() -> None:
    """``ChainClient.read`` (the withdrawal read on every voucher) goes straight to the provider: it still maps a
    chain that does not answer to ``rpc_unavailable`` and counts the request for /metrics."""
    from proofmarket.chain import rpc_stats
    from proofmarket.chain.client import ChainClient
    from proofmarket.core.errors import RPCUnavailable

    before = rpc_stats.snapshot()[0].get(("eth_call", "unreachable"), 0)
    with pytest.raises(RPCUnavailable):
        ChainClient("http://127.0.0.1:9").read("0x" + "11" * 20, "pendingWithdrawals(bytes32)", [bytes(32)],
                                               ["uint128", "uint40"])
    assert rpc_stats.snapshot()[0].get(("eth_call", "unreachable"), 0) == before + 1


class _Rpc(BaseHTTPRequestHandler):
    """A JSON-RPC endpoint that answers eth_blockNumber with the client's port (which connection asked), closes
    after answering when asked to (``close``), answers 500 to ``boom`` and sleeps through ``slow``."""

    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["method"] == "slow":
            time.sleep(1.0)
        status = 500 if request["method"] == "boom" else 200
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": hex(self.client_address[1])}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if request["method"] == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rpc_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rpc)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_plain_rpc_url_is_asked_over_one_kept_connection_per_thread(rpc_url: str) -> None:
    """issue 57: requests costs ~1 ms of CPU a request, several times a local node's answer; an http:// RPC URL
    without a proxy is asked over a kept-alive connection per thread, with the same answers and errors."""
    provider = rpc_provider(rpc_url)
    assert isinstance(provider._request_session_manager, KeepAliveRequests)
    ports = {provider.make_request(RPCEndpoint("eth_blockNumber"), [])["result"] for _ in range(5)}
    assert len(ports) == 1  # one connection for the five
    other: list[str] = []
    worker = threading.Thread(target=lambda: other.append(provider.make_request(RPCEndpoint("x"), [])["result"]))
    worker.start()
    worker.join()
    assert other and other[0] not in ports  # another thread, its own connection

    # the server closes the connection after an answer: the next request opens a new one and is answered
    closing = provider.make_request(RPCEndpoint("close"), [])["result"]
    again = provider.make_request(RPCEndpoint("eth_blockNumber"), [])["result"]
    assert again not in (closing, *ports)

    with pytest.raises(requests.HTTPError, match="500"):  # as requests' raise_for_status
        provider.make_request(RPCEndpoint("boom"), [])
    assert provider.make_request(RPCEndpoint("eth_blockNumber"), [])["result"]


def test_a_kept_connection_the_server_dropped_is_opened_again_before_it_is_used(rpc_url: str) -> None:
    manager = rpc_provider(rpc_url)._request_session_manager
    assert isinstance(manager, KeepAliveRequests)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
    first = json.loads(manager.make_post_request(rpc_url, body))["result"]
    conn = manager._local.conn
    conn.sock.shutdown(socket.SHUT_RD)  # what a server's close looks like from here: readable, nothing asked
    second = json.loads(manager.make_post_request(rpc_url, body))["result"]
    assert second != first and manager._local.conn is not conn


def test_a_slow_or_absent_node_raises_what_requests_raises(rpc_url: str) -> None:
    provider = rpc_provider(rpc_url, request_kwargs={"timeout": 0.2})
    with pytest.raises(requests.Timeout):
        provider.make_request(RPCEndpoint("slow"), [])
    assert provider.make_request(RPCEndpoint("eth_blockNumber"), [])["result"]  # a fresh connection after it
    with pytest.raises(requests.ConnectionError):
        rpc_provider("http://127.0.0.1:9").make_request(RPCEndpoint("eth_blockNumber"), [])


def test_https_and_proxied_urls_keep_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not isinstance(rpc_provider("https://rpc.example/v1")._request_session_manager, KeepAliveRequests)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert not isinstance(rpc_provider("http://rpc.example:8545")._request_session_manager, KeepAliveRequests)
