"""Routing among nodes by price and reputation (proofmarket.sdk.routing), against stub nodes: without a chain a
node's word about its record counts for nothing (the cheapest wins), the skipped nodes and their reasons, and
the errors when none qualifies. The on-chain reading is tests/chain/test_chain_routing.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from proofmarket.core.errors import NodeUnavailable, UnknownModel, UsageError
from proofmarket.sdk.routing import pick_node

MODEL = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def _prover(rep: float | None, val: float | None, fulfilled: int, failed: int) -> dict[str, Any]:
    erc = {"agent_id": 1, "reputation": {"count": 3 if rep is not None else 0, "average": rep or 0},
           "validations": {"count": 2 if val is not None else 0, "average": val or 0}}
    return {"address": "0x" + "11" * 20, "stake": 1, "fulfilled": fulfilled, "failed": failed, "expired": 0,
            "erc8004": erc}


NODES: dict[str, Any] = {
    "cheap-bad": {"price": {"atomic": "1000"}, "mode": "proven", "active": True,
                  "prover": _prover(10, 0, 2, 8)},
    "good": {"price": {"atomic": "1500"}, "mode": "proven", "active": True, "prover": _prover(95, 100, 50, 0)},
    "new": {"price": {"atomic": "1200"}, "mode": "proven", "active": True, "prover": None},
    "pricey": {"price": {"atomic": "99999"}, "mode": "proven", "active": True, "prover": _prover(100, 100, 9, 0)},
    "inactive": {"price": {"atomic": "10"}, "mode": "proven", "active": False, "prover": None},
}


def _transport() -> httpx.MockTransport:
    def send(request: httpx.Request) -> httpx.Response:
        name = request.url.host
        if name == "down":
            raise httpx.ConnectError("refused")
        if name not in NODES or not request.url.path.endswith(MODEL):
            return httpx.Response(404, json={"error": {"code": "unknown_model", "message": "", "details": {}}})
        return httpx.Response(200, content=json.dumps(NODES[name]).encode())

    return httpx.MockTransport(send)


def test_without_a_chain_the_nodes_word_counts_for_nothing() -> None:
    urls = [f"http://{n}" for n in (*NODES, "down", "elsewhere")]
    choice = pick_node(urls, MODEL, max_price=10_000, transport=_transport())
    assert choice.best.url == "http://cheap-bad"  # "good" claims 95 % and 50/0, but nothing of it can be checked
    assert [c.url for c in choice.ranked] == ["http://cheap-bad", "http://new", "http://good"]
    assert [c.quality for c in choice.ranked] == pytest.approx([0.5, 0.5, 0.5])
    assert choice.ranked[2].details["claimed"]["fulfilled"] == 50  # kept for display, not scored
    assert set(choice.skipped) == {"http://pricey", "http://inactive", "http://down", "http://elsewhere"}
    assert "above" in choice.skipped["http://pricey"] and "deactivated" in choice.skipped["http://inactive"]


def test_on_chain_routing_needs_the_clients_own_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an RPC but no deployment file of the client's own, routing refuses (it never reads a node's)."""
    from proofmarket.chain.devnet import free_port

    monkeypatch.setenv("PROOFMARKET_HOME", str(tmp_path))
    monkeypatch.delenv("PROOFMARKET_DEPLOYMENT_FILE", raising=False)
    monkeypatch.setattr("proofmarket.chain.client.ChainClient.chain_id", 31337)
    with pytest.raises(UsageError, match="deployment"):
        pick_node(["http://good"], MODEL, rpc_url=f"http://127.0.0.1:{free_port()}", transport=_transport())


def test_no_node_qualifies() -> None:
    with pytest.raises(UnknownModel):
        pick_node(["http://elsewhere", "http://pricey"], MODEL, max_price=10, transport=_transport())
    with pytest.raises(NodeUnavailable):
        pick_node(["http://down"], MODEL, transport=_transport())
