"""``request --node`` reports what the chain says, not what the node says (issue 8).

After the node reports "fulfilled", the CLI reads the request on chain (getRequest: status Fulfilled, outputHash
= keccak of the output instances of the bundle the node names, which must answer the request's commitment). A
node that lies about a settlement gets ``settlement_mismatch`` and a non-zero exit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from escrow_helpers import AppFactory, EscrowEnv, request_cli, serve
from fastapi import FastAPI

from proofmarket.chain.types import RequestStatus
from proofmarket.core.errors import SettlementMismatch
from proofmarket.sdk.checks import check_settlement

pytestmark = [pytest.mark.slow, pytest.mark.chain]



def lying_node(bundle: dict[str, Any] | None = None, bundle_cid: str = "bafkreifake") -> FastAPI:
    """Takes the input, then says at once that the request is fulfilled and paid (nothing happened on chain)."""
    app = FastAPI()

    @app.post("/v1/requests/{request_id}/input")
    def post_input(request_id: int) -> dict[str, Any]:
        return {"request_id": request_id, "status": "pending"}

    @app.get("/v1/requests/{request_id}")
    def get_request(request_id: int) -> dict[str, Any]:
        return {"request_id": request_id, "status": "fulfilled", "bundle_cid": bundle_cid,
                "fulfil_tx": "0x" + "ab" * 32,
                "settlement": {"status": "FULFILLED", "paid": {"owner": 1, "prover": 1, "platform": 1}}}

    @app.get("/v1/proofs/{cid}")
    def proof(cid: str) -> dict[str, Any]:
        return bundle or {}

    return app


@pytest.fixture
def liar_url() -> Iterator[str]:
    yield from serve(lying_node())


@pytest.fixture
def node_url(make_app: AppFactory) -> Iterator[str]:
    yield from serve(make_app())



def test_a_node_that_lies_about_a_settlement_is_caught_on_chain(env: EscrowEnv, liar_url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = request_cli(env, tmp_path, monkeypatch, "--node", liar_url, "--wait", "30")

    assert code == 1, out
    assert out["ok"] is False and out["error"]["code"] == "settlement_mismatch"
    assert "chain says it is open" in out["error"]["message"]
    request_id = out["error"]["details"]["request_id"]
    assert env.market.market.get_request(request_id).status is RequestStatus.OPEN


def test_an_honest_fulfilment_is_reported_from_the_chain(env: EscrowEnv, node_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = request_cli(env, tmp_path, monkeypatch, "--node", node_url, "--wait", "120")

    assert code == 0, out
    chain = out["chain"]
    onchain = env.market.market.get_request(out["request_id"])
    assert chain["status"] == "fulfilled" and chain["prover"] == onchain.prover
    assert onchain.output_hash is not None and chain["output_hash"] == "0x" + onchain.output_hash.hex()
    assert chain["bundle_cid"] == out["node"]["bundle_cid"] and len(chain["output"][0]) == 3

    # a node naming a bundle whose output is not the one the chain recorded, or that answers another input
    bundle = httpx.get(f"{node_url}/v1/proofs/{chain['bundle_cid']}",
                       headers={"X-Job-Token": out["node"]["access_token"]}).json()
    with pytest.raises(SettlementMismatch, match="not the output the chain recorded"):
        check_settlement(out["request_id"], replace(onchain, output_hash=b"\x01" * 32), bundle, chain["bundle_cid"],
                         out["commitment"])
    with pytest.raises(SettlementMismatch, match="input commitment"):
        check_settlement(out["request_id"], onchain, bundle, chain["bundle_cid"], "0x" + "00" * 32)
    with pytest.raises(SettlementMismatch, match="other bytes"):
        check_settlement(out["request_id"], onchain, bundle, "bafkreinotthisbundle", out["commitment"])
