"""ERC-8004 on the devnet: the node's prover registers an agent identity, the registration file names it,
a consumer rates the node through the SDK, and `prover status` shows the identity and its scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from escrow_helpers import AppFactory, EscrowEnv, mlp_input, node_settings, wait_status
from fastapi.testclient import TestClient

from proofmarket.api import create_app
from proofmarket.core.errors import ContractReverted
from proofmarket.sdk.client import Client

pytestmark = [pytest.mark.chain]


def _through(client: TestClient) -> httpx.MockTransport:
    def send(request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        answer = client.request(request.method, str(request.url), headers=headers, content=request.read())
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(send)


def test_identity_registration_file_and_feedback(env: EscrowEnv, tmp_path: Path) -> None:
    market = env.market
    # a URI of this test's own: the home's agent may already be registered (another test, in any order) with the
    # plain one, and registering it again with the same URI would send nothing
    uri = "http://testserver/.well-known/agent-registration.json?test=feedback"
    agent_id, tx = market.register_agent(uri)
    assert tx is not None and market.agent_id() == agent_id
    assert market.register_agent(uri) == (agent_id, None)  # once
    app = create_app(node_settings(env.home, env.rpc_url, tmp_path / "node.db", escrow_watcher="off"),
                     workspace=env.ws)
    app.state.services.catalog.register(env.public, price_atomic=2_500_000)
    try:
        with TestClient(app) as node:
            doc = node.get("/.well-known/agent-registration.json").json()
            identity = market.erc8004.identity
            assert doc["registrations"] == [{"agentId": agent_id, "agentRegistry": identity.registry_id()}]
            assert node.get("/.well-known/ai-service.json").json()["chain"]["erc8004"] == market.deployment.erc8004
            consumer = market.accounts.consumer
            with Client("http://testserver", account=consumer, transport=_through(node),
                        cache_dir=tmp_path / "c") as sdk:
                rated = sdk.give_feedback(env.rpc_url, 95, tag2="proven", feedback_uri="ipfs://bafy...")
                assert rated["agent_id"] == agent_id and rated["summary"]["count"] >= 1
                app.state.services.catalog.listings._profile = None  # the 10 s cache
                prover = sdk.model(env.public)["prover"]
                assert prover["address"] == market.accounts.prover.address and prover["fulfilled"] >= 0
                assert prover["erc8004"]["agent_id"] == agent_id
                assert prover["erc8004"]["reputation"]["count"] >= 1
            from proofmarket.sdk.routing import pick_node

            choice = pick_node(["http://testserver"], env.public, rpc_url=env.rpc_url,
                               deployment=market.deployment, transport=_through(node))
            on_chain = choice.best.details["prover"]  # read again from the chain, not the node's word
            assert on_chain["erc8004"]["agent_id"] == agent_id and on_chain["address"] == market.accounts.prover.address
            with Client("http://testserver", account=market.accounts.prover, transport=_through(node),
                        cache_dir=tmp_path / "p") as own, pytest.raises(ContractReverted, match="SelfFeedback"):
                own.give_feedback(env.rpc_url, 100)
    finally:
        app.state.services.close()
    env_vars = {**os.environ, "PROOFMARKET_HOME": str(env.home), "PROOFMARKET_RPC_URL": env.rpc_url}
    status = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "prover", "status", "--json"],
                            capture_output=True, text=True, env=env_vars, timeout=120, check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    agent = json.loads(status.stdout)["erc8004"]
    assert agent["agent_id"] == agent_id and agent["reputation"]["count"] >= 1 and agent["uri"] == uri


def test_a_fulfilled_escrow_request_gets_a_zk_validation_record(env: EscrowEnv, make_app: AppFactory) -> None:
    market = env.market
    agent_id, _ = market.register_agent("http://testserver/.well-known/agent-registration.json")
    receipt = market.request(env.public, mlp_input())
    with TestClient(make_app()) as node:
        wait_status(node, receipt.request_id, ("seen",), timeout_s=10)
        node.post(f"/v1/requests/{receipt.request_id}/input", json={"input": mlp_input()})
        done = wait_status(node, receipt.request_id, ("fulfilled", "failed"))
    assert done["status"] == "fulfilled", done
    validation = done["settlement"]["validation"]
    assert validation["response"] == 100 and validation["tag"] == "zk-escrow" and validation["agent_id"] == agent_id
    # the consumer paid this prover on the market: its feedback now weighs in routing (by what it paid)
    from proofmarket.sdk.routing import pick_node

    with TestClient(make_app(escrow_watcher="off")) as node:
        with Client("http://testserver", account=market.accounts.consumer, transport=_through(node)) as sdk:
            sdk.give_feedback(env.rpc_url, 90)
        choice = pick_node(["http://testserver"], env.public, rpc_url=env.rpc_url, deployment=market.deployment,
                           transport=_through(node))
    reputation = choice.best.details["prover"]["erc8004"]["reputation"]
    assert reputation["count"] >= 1 and reputation["paid"] >= int(done["amount_atomic"]) and reputation["clients"] >= 1
    assert choice.best.details["parts"]["reputation"] > 0.5
    registries = market.erc8004
    assert validation["validator"] == registries.zk.address
    assert validation["request_hash"] in registries.validation.validations(agent_id)
    assert registries.validation.summary(agent_id, tag="zk-escrow").count >= 1
    with pytest.raises(ContractReverted, match="UnknownValidation"):  # nobody asked about request 999
        registries.zk.validate_request(999, market.accounts.consumer)
