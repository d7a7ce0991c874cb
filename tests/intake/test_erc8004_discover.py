"""Nodes found from the chain: two nodes register ERC-8004 identities on a devnet (each prover its own agent, each
registration file at its node); ``discover`` and ``proofmarket discover`` list both with their models and prices,
filter by price and mode, and mark an agent whose registration file does not name it as unverified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from escrow_helpers import EscrowEnv, node_settings
from served import Served

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.onchain import Market
from proofmarket.onchain import accounts as role_accounts
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.sdk.discovery import discover

pytestmark = [pytest.mark.chain]
WELL_KNOWN = "/.well-known/agent-registration.json"


@pytest.fixture
def two_nodes(env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Served]]:
    """Node A (the dev prover) sells the public MLP at 0.01; node B (dev account 7 as its prover) the hashed one at
    0.5. Each registers its agent with its own registration file's URL."""
    chain_id = env.market.client.chain_id
    second = RoleAccounts(*(dev_account(i, chain_id) for i in (0, 1, 2, 7)))
    apps = []
    for name, accounts, model, price in (("a", None, env.public, 10_000), ("b", second, env.hashed, 500_000)):
        with monkeypatch.context() as patch:
            if accounts is not None:  # node B signs as its own prover: its registration file names its own agent
                patch.setattr(role_accounts.RoleAccounts, "for_chain", classmethod(lambda cls, *_: second))
            app = create_app(node_settings(env.home, env.rpc_url, tmp_path / f"{name}.db", escrow_watcher="off",
                                           webhook_private_targets="on"),  # its discovery fetches 127.0.0.1
                             workspace=env.ws)
        app.state.services.catalog.register(model, price_atomic=price)
        apps.append(app)
    served = [Served(app).__enter__() for app in apps]
    try:
        env.market.register_agent(served[0].url + WELL_KNOWN)
        with Market.open(workspace=env.ws, accounts=second) as b_market:
            b_market.register_agent(served[1].url + WELL_KNOWN)
        with Market.open(workspace=env.ws, accounts=RoleAccounts(*(dev_account(i, chain_id) for i in (0, 1, 2, 8)))) \
                as impostor:  # claims node A's file: that file names another agent
            impostor.register_agent(served[0].url + WELL_KNOWN)
        yield served
    finally:
        for node, app in zip(served, apps, strict=True):
            node.stop()
            app.state.services.close()


def test_discover_lists_both_nodes_with_models_and_prices_and_flags_an_impostor(
        env: EscrowEnv, two_nodes: list[Served], tmp_path: Path) -> None:
    registries = env.market.deployment.erc8004
    assert registries is not None
    found = discover(env.rpc_url, registries["IdentityRegistry"],
                     reputation_registry=registries["ReputationRegistry"])
    by_node = {n.node: n for n in found if n.verified}
    assert len(by_node) >= 2, [(n.agent_id, n.error, n.node) for n in found]
    a, b = (by_node[s.url] for s in two_nodes)
    assert [m["id"] for m in a.models] == [env.public] and [m["id"] for m in b.models] == [env.hashed]
    for node, found_node in zip(two_nodes, (a, b), strict=True):  # the price each node sells at (the registry's)
        model = found_node.models[0]
        sold = httpx.get(f"{node.url}/v1/models/{model['id']}", timeout=30).json()["price"]
        assert model["price_atomic"] == int(sold["atomic"]) > 0 and model["price"] == sold["amount"]
        # what the registration file declares each answer guarantees, the verifier the chain's listing names
        listed = env.market.registry.get_model(bytes.fromhex(sold_listing(node, model["id"])[2:])).spec
        assert (model["guarantee"], model["proof_format"]) == ("proven", "ezkl-halo2-kzg-bn254")
        assert model["verifier"]["address"].lower() == listed.verifier.lower()
    assert a.owner != b.owner and a.reputation is not None and a.x402 is not None
    impostors = [n for n in found if not n.verified]
    assert impostors and all("does not name agent" in str(n.error) for n in impostors)

    cheapest = min(a.models[0]["price_atomic"], b.models[0]["price_atomic"])
    assert discover(env.rpc_url, registries["IdentityRegistry"], max_price_atomic=cheapest - 1) == []
    cheap = discover(env.rpc_url, registries["IdentityRegistry"], max_price_atomic=cheapest, only_verified=True)
    assert cheap and all(m["price_atomic"] <= cheapest for n in cheap for m in n.models)
    assert discover(env.rpc_url, registries["IdentityRegistry"], mode="attested") == []

    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    cli = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "discover", "--rpc-url", env.rpc_url,
                          "--home", str(env.home), "--verified", "--json"], capture_output=True, text=True,
                         env=env_vars, timeout=120)
    assert cli.returncode == 0, cli.stderr
    nodes = json.loads(cli.stdout)["nodes"]
    assert {n["node"] for n in nodes} >= {s.url for s in two_nodes} and all(n["verified"] for n in nodes)


def sold_listing(node: Served, model_id: str) -> str:
    """The model's on-chain listing id, as the node names it."""
    return str(httpx.get(f"{node.url}/v1/models/{model_id}", timeout=30).json()["registry"]["onchain_id"])


def test_a_node_lists_the_nodes_on_its_chain_over_http_and_mcp(env: EscrowEnv, two_nodes: list[Served]) -> None:
    """GET /v1/nodes (and the MCP tool discover_nodes) on node A: both nodes, read with node A's own RPC; filters."""
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    from proofmarket.mcp_tools.catalog import DISCOVER

    url = two_nodes[0].url
    every = httpx.get(f"{url}/v1/nodes", params={"verified": "false"}, timeout=60).json()
    listed = httpx.get(f"{url}/v1/nodes", timeout=60).json()
    assert len(every["nodes"]) == 3, every  # the impostor too, unverified
    assert {n["node"] for n in listed["nodes"]} == {s.url for s in two_nodes}  # verified only, by default
    assert httpx.get(f"{url}/v1/nodes", params={"mode": "attested"}, timeout=60).json()["nodes"] == []
    refused = httpx.get(f"{url}/v1/nodes", params={"max_price": "lots"}, timeout=60)
    assert refused.status_code in (400, 422) and refused.json()["error"]["code"]

    async def over_mcp() -> dict[str, Any]:
        async with streamablehttp_client(f"{url}/mcp") as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
            found = await session.call_tool(DISCOVER, {"mode": "proven"})
            return {"names": names, "found": found.structuredContent}

    run = asyncio.run(over_mcp())
    assert DISCOVER in run["names"]
    assert {n["node"] for n in run["found"]["nodes"]} == {s.url for s in two_nodes}
