"""Two nodes on one devnet, each in its own home with the defaults (the devnet's prover key for both), keep their
ERC-8004 identities themselves (``PROOFMARKET_AGENT_REGISTER=on``, issue 71): each home is its own agent (before, a
second registration re-pointed the first node's agent, as both are the same key), ``/health`` names it, and
``discover`` and the MCP ``discover_nodes`` tool find both nodes, each verified against its own registration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from escrow_helpers import EscrowEnv, node_settings
from served import Served

from proofmarket.api import create_app
from proofmarket.chain.devnet import free_port
from proofmarket.chain.home import MarketHome
from proofmarket.sdk.discovery import discover

pytestmark = [pytest.mark.chain]


@pytest.fixture
def two_homes(env: EscrowEnv, tmp_path: Path) -> Iterator[list[Served]]:
    deployment = MarketHome(env.home).deployment_file(env.market.client.chain_id)  # one market on the devnet
    # the agents these nodes register stay out of the other tests' registry (they count its agents): the chain is
    # put back as it was once the nodes are gone
    snapshot = env.market.client.rpc("evm_snapshot", [])
    apps, served = [], []
    try:
        for name in ("a", "b"):
            port = free_port()  # no public URL: on the devnet, the listen address is the registration's
            settings = node_settings(tmp_path / name, env.rpc_url, tmp_path / f"{name}.db", api_port=port,
                                     deployment_file=deployment, agent_register="on", escrow_watcher="off",
                                     webhook_private_targets="on")  # its discovery fetches 127.0.0.1
            apps.append(create_app(settings))
            served.append(Served(apps[-1], port=port).__enter__())
        yield served
    finally:
        for node, app in zip(served, apps, strict=False):
            node.stop()
            app.state.services.close()
        env.market.client.rpc("evm_revert", [snapshot])


def agent_of(node: Served, deadline_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        agent = httpx.get(f"{node.url}/health", timeout=30).json().get("agent") or {}
        if agent.get("agent_id") is not None or time.monotonic() > deadline:
            return agent
        time.sleep(0.3)


def test_two_homes_are_two_agents_found_by_discover_and_over_mcp(env: EscrowEnv, two_homes: list[Served]) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    from proofmarket.mcp_tools.catalog import DISCOVER

    agents = [agent_of(node) for node in two_homes]
    assert all(a.get("agent_id") for a in agents), agents
    assert agents[0]["agent_id"] != agents[1]["agent_id"]
    for node, agent in zip(two_homes, agents, strict=True):
        assert agent["uri"] == f"{node.url}/.well-known/agent-registration.json"
        served = httpx.get(agent["uri"], timeout=30).json()  # each file names its own agent
        assert [r["agentId"] for r in served["registrations"]] == [agent["agent_id"]]

    registries = env.market.deployment.erc8004
    assert registries is not None
    found = {n.node: n for n in discover(env.rpc_url, registries["IdentityRegistry"], only_verified=True)}
    assert {s.url for s in two_homes} <= set(found)
    assert [found[s.url].agent_id for s in two_homes] == [a["agent_id"] for a in agents]

    async def over_mcp() -> dict[str, Any]:
        async with streamablehttp_client(f"{two_homes[0].url}/mcp") as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            return (await session.call_tool(DISCOVER, {})).structuredContent or {}

    listed = {n["node"] for n in asyncio.run(over_mcp())["nodes"]}
    assert {s.url for s in two_homes} <= listed
