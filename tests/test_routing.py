"""Routing among nodes by price and reputation (proofmarket.routing), against stub nodes: the score, the
skipped nodes and their reasons, and the errors when none qualifies."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from proofmarket.errors import NodeUnavailable, UnknownModel
from proofmarket.routing import pick_node

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


def test_the_best_node_by_quality_per_price() -> None:
    urls = [f"http://{n}" for n in (*NODES, "down", "elsewhere")]
    choice = pick_node(urls, MODEL, max_price=10_000, transport=_transport())
    assert choice.best.url == "http://good"  # 95 % reputation, 100 validations, 50/0: worth its higher price
    assert [c.url for c in choice.ranked] == ["http://good", "http://new", "http://cheap-bad"]
    assert choice.ranked[1].quality == pytest.approx(0.5)  # a new prover: neutral on every count
    assert set(choice.skipped) == {"http://pricey", "http://inactive", "http://down", "http://elsewhere"}
    assert "above" in choice.skipped["http://pricey"] and "deactivated" in choice.skipped["http://inactive"]


def test_no_node_qualifies() -> None:
    with pytest.raises(UnknownModel):
        pick_node(["http://elsewhere", "http://pricey"], MODEL, max_price=10, transport=_transport())
    with pytest.raises(NodeUnavailable):
        pick_node(["http://down"], MODEL, transport=_transport())
