"""MCP: an agent with only the official ``mcp`` client and ``x402.mcp`` lists a node's catalogue, pays one proven
and one attested tool call (x402 exact, on the devnet), and verifies both bundles with the SDK; over the node's
``/mcp`` (streamable HTTP) and over ``proofmarket mcp`` (stdio). Refusals keep the node's codes and charge
nothing; an API key pays a call without x402."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from typer.testing import CliRunner
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402_helpers import PRICE, Chain, Served, funded_wallet, mlp_input, node_settings

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.cli.main import app as cli
from proofmarket.core.errors import AnswerMismatch, UsageError, VerificationFailed
from proofmarket.mcp_tools.catalog import SEARCH, VERIFY, tool_name
from proofmarket.sdk.client import Client
from proofmarket.sdk.tool_results import verify_tool_result
from proofmarket.systems.proof_meta import PROOF_META
from proofmarket.systems.workspace import Workspace

PER_1K = 50_000
MAX_TOKENS = 8
OWNER_INDEX = 5


@pytest.fixture(scope="module")
def mcp_node(chain: Chain, mlp_id: str, node_home: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Served, str, str]]:
    """A paid node selling the sample MLP (proven) and a tiny LM (attested)."""
    from proofmarket.systems.attested.tiny import build_tiny_lm

    lm_home = tmp_path_factory.mktemp("mcp-lm")
    settings = node_settings(node_home, tmp_path_factory.mktemp("mcp-db") / "node.db", chain.rpc_url,
                             chain.deployment_file)
    ws = Workspace(settings)
    lm_id, _ = ws.compile_attested(build_tiny_lm(lm_home / "tiny-llama"), max_tokens_cap=64)
    ws.close()
    app = create_app(settings)
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=owner)
    app.state.services.catalog.register(lm_id, price_atomic=PER_1K, owner=owner)
    with Served(app) as served:
        yield served, mlp_id, lm_id
    app.state.services.close()


@pytest.fixture(scope="module")
def agent(chain: Chain) -> LocalAccount:
    return funded_wallet(chain, "mcp-agent", 10_000_000)


def paying(account: LocalAccount, usdc: str) -> x402Client:
    """The x402 SDK's client, allowed the devnet's USDC (not one of its default assets) up to 1 USDC a payment."""
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(account))
    client.set_spend_controls({"max_amount_per_payment": "$1", "allowed_assets": [
        {"network": f"eip155:{DEVNET_CHAIN_ID}", "asset": usdc, "max_amount_per_payment": "1000000"}]})
    return client


async def agent_session(session: ClientSession, account: LocalAccount, usdc: str) -> dict[str, Any]:
    """What an agent does: list the tools, call one proven and one attested model paying with x402."""
    mcp = x402MCPSession(session, paying(account, usdc))
    await mcp.initialize()
    tools = {t.name: t for t in (await mcp.list_tools()).tools}
    proven_tool = next(n for n in tools if n.startswith("infer_"))
    attested_tool = next(n for n in tools if n.startswith("generate_"))
    proven = await mcp.call_tool(proven_tool, {"input_data": mlp_input()["input_data"]})
    attested = await mcp.call_tool(attested_tool, {"prompt": "the market", "max_tokens": MAX_TOKENS})
    unknown = await session.call_tool("infer_nothing_here", {})
    return {"tools": tools, "proven": proven, "attested": attested, "unknown": unknown,
            "capabilities": session.get_server_capabilities()}


def check_agent_run(run: dict[str, Any], mlp_id: str, lm_id: str, url: str, cache: Path) -> None:
    tools = run["tools"]
    assert {SEARCH, VERIFY} <= set(tools)
    proven_tool = tool_name("infer", "", mlp_id)
    infer = next(t for n, t in tools.items() if n.startswith("infer_") and n.endswith(mlp_id[-10:]))
    assert infer.inputSchema["required"] == ["input_data"] and "USDC per call" in (infer.description or "")
    assert "PROVEN" in (infer.description or "") and proven_tool.endswith(mlp_id[-10:])
    generate = next(t for n, t in tools.items() if n.startswith("generate_"))
    assert "ATTESTED: not a proof" in (generate.description or "")
    for name in ("proven", "attested"):
        result = run[name]
        assert not result.is_error and result.payment_made, result.content
        assert result.payment_response is not None and result.payment_response.success
    proven = run["proven"].raw_result.structuredContent
    attested = run["attested"].raw_result.structuredContent
    assert proven["model_id"] == mlp_id and proven["mode"] == "proven" and proven["output"]
    assert attested["model_id"] == lm_id and attested["mode"] == "attested" and attested["text"]
    assert run["unknown"].isError and run["unknown"].structuredContent["error"]["code"] == "unknown_tool"
    with Client(url, cache_dir=cache, devnet=True) as sdk:  # the agent checks both bundles itself
        assert sdk.verify(proven["bundle"]).output == proven["output"]
        report = sdk.verify(attested["bundle"])
        assert report.mode == "attested" and report.text == attested["text"]
    check_proof_meta(run, mlp_id, lm_id, cache.parent / "meta-cache")


def check_proof_meta(run: dict[str, Any], mlp_id: str, lm_id: str, cache: Path) -> None:
    """Each paid result carries its proof in _meta (the server advertises the extension): verified from _meta alone
    (the node's URL comes from it: a fresh cache, no Client of the node), each field held against the bundle."""
    assert PROOF_META in (run["capabilities"].experimental or {})
    for name, model_id, mode in (("proven", mlp_id, "proven"), ("attested", lm_id, "attested")):
        raw = run[name].raw_result
        meta = (raw.meta or {})[PROOF_META]
        body = raw.structuredContent
        assert (meta["guarantee"], meta["modelId"], meta["bundleCid"]) == (mode, model_id, body["bundle_cid"])
        assert meta["receipt"] is not None and meta["receipt"] == body["receipt"] == meta["bundle"]["receipt"]
        sent = {"input_data": mlp_input()["input_data"]} if mode == "proven" else None
        checked = verify_tool_result(raw, model_id=model_id, inputs=sent, cache_dir=cache, devnet=True)
        assert checked.report.valid and checked.report.mode == mode and checked.report.model_id == model_id
        assert any(c.startswith("_meta:") for c in checked.report.checks)
        assert "the tool result's body shows the verified output" in checked.report.checks
        assert (sent is None) == any("proven input" in u for u in checked.unchecked)
        doc = raw.model_dump(by_alias=True, mode="json")  # the same, as JSON: what an agent stores
        assert verify_tool_result(doc, cache_dir=cache, devnet=True).report.output == checked.report.output
    proven_meta = run["proven"].raw_result.meta[PROOF_META]
    attested_meta = run["attested"].raw_result.meta[PROOF_META]
    for lie in ({"modelId": lm_id}, {"bundleCid": attested_meta["bundleCid"]}, {"guarantee": "attested"},
                {"receipt": attested_meta["receipt"]}, {"proofFormat": attested_meta["proofFormat"]}):
        forged = {"_meta": {PROOF_META: {**proven_meta, **lie}}}
        with pytest.raises(AnswerMismatch):
            verify_tool_result(forged, cache_dir=cache, devnet=True)
    lying = run["proven"].raw_result.model_dump(by_alias=True, mode="json")  # a body the proof does not back
    lying["structuredContent"] = {**lying["structuredContent"], "output": [[0.0] * len(proven_meta["bundle"]["output"]
                                                                                       ["values"][0])]}
    with pytest.raises(AnswerMismatch, match="output"):
        verify_tool_result(lying, cache_dir=cache, devnet=True)
    with pytest.raises(AnswerMismatch):  # another model than the one called
        verify_tool_result(run["proven"].raw_result, model_id=lm_id, cache_dir=cache, devnet=True)
    other = attested_meta["receipt"]  # the bundle and _meta both carry another call's receipt: its binding fails
    with pytest.raises(VerificationFailed, match="receipt"):
        verify_tool_result({"_meta": {PROOF_META: {**proven_meta, "receipt": other,
                                                   "bundle": {**proven_meta["bundle"], "receipt": other}}}},
                           cache_dir=cache, devnet=True)
    with pytest.raises(UsageError, match="no proof in _meta"):
        verify_tool_result(run["unknown"], cache_dir=cache, devnet=True)


def test_an_agent_pays_and_verifies_a_proven_and_an_attested_call_over_the_nodes_mcp_route(
        chain: Chain, mcp_node: tuple[Served, str, str], agent: LocalAccount, tmp_path: Path) -> None:
    served, mlp_id, lm_id = mcp_node
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    before = chain.balances(agent.address, owner)

    async def go() -> dict[str, Any]:
        async with streamablehttp_client(f"{served.url}/mcp") as (read, write, _), \
                ClientSession(read, write) as session:
            return await agent_session(session, agent, chain.usdc.address)

    run = asyncio.run(go())
    check_agent_run(run, mlp_id, lm_id, served.url, tmp_path / "cache")
    # proofmarket verify reads a stored tool result: the proof in its _meta, artifacts from the node it names
    path = tmp_path / "result.json"
    path.write_text(json.dumps(run["proven"].raw_result.model_dump(by_alias=True, mode="json")))
    verified = CliRunner().invoke(cli, ["verify", str(path), "--json", "--home", str(tmp_path / "fresh-home")])
    assert verified.exit_code == 0, verified.output
    answer = json.loads(verified.output)
    assert answer["valid"] and answer["model_id"] == mlp_id and any(c.startswith("_meta:") for c in answer["checks"])
    listed = run["proven"].raw_result.meta[PROOF_META]["verifier"]  # without --onchain, a named verifier is unchecked
    assert (answer["unchecked"] == []) == (listed is None)
    forged = json.loads(path.read_text())
    forged["_meta"][PROOF_META]["modelId"] = lm_id
    path.write_text(json.dumps(forged))
    refused = CliRunner().invoke(cli, ["verify", str(path), "--json", "--home", str(tmp_path / "fresh-home")])
    assert refused.exit_code == 1 and "answer_mismatch" in refused.output and "modelId" in refused.output
    after = chain.balances(agent.address, owner)
    charged = PRICE + PER_1K * MAX_TOKENS // 1000
    assert (before[0] - after[0], after[1] - before[1]) == (charged, charged)  # each call paid once


def test_proofmarket_mcp_over_stdio_serves_the_same_tools(
        chain: Chain, mcp_node: tuple[Served, str, str], agent: LocalAccount, tmp_path: Path) -> None:
    served, mlp_id, lm_id = mcp_node
    server = StdioServerParameters(command=sys.executable, args=["-m", "proofmarket.cli.main", "mcp", "--node",
                                                                 served.url, "--devnet"],
                                   env={**os.environ, "HOME": str(tmp_path)})

    async def go() -> tuple[dict[str, Any], Any]:
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            run = await agent_session(session, agent, chain.usdc.address)
            checked = await session.call_tool(VERIFY, {"bundle": run["proven"].raw_result.structuredContent["bundle"]})
            return run, checked

    run, checked = asyncio.run(go())
    check_agent_run(run, mlp_id, lm_id, served.url, tmp_path / "cache")
    assert not checked.isError and checked.structuredContent["valid"] is True
    assert "this machine" in checked.structuredContent["verified_by"]


def test_refusals_keep_the_nodes_codes_and_charge_nothing(
        chain: Chain, mcp_node: tuple[Served, str, str], agent: LocalAccount) -> None:
    served, mlp_id, _ = mcp_node
    before = chain.balances(agent.address)
    name = tool_name("infer", "", mlp_id)

    async def go() -> dict[str, Any]:
        async with streamablehttp_client(f"{served.url}/mcp") as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            tool = next(n for n in tools if n.endswith(mlp_id[-10:]))
            unpaid = await session.call_tool(tool, {"input_data": mlp_input()["input_data"]})
            bad_input = await session.call_tool(tool, {"input_data": [[1.0]]})
            garbage = await session.call_tool(tool, {"input_data": mlp_input()["input_data"]},
                                              meta={"x402/payment": {"x402Version": 2, "payload": "nothing"}})
            search = await session.call_tool(SEARCH, {"q": "mlp"})
            return {"unpaid": unpaid, "bad_input": bad_input, "garbage": garbage, "search": search, "name": name}

    run = asyncio.run(go())
    unpaid = run["unpaid"]
    assert unpaid.isError and unpaid.structuredContent["x402Version"] == 2  # the terms x402.mcp pays
    assert int(unpaid.structuredContent["accepts"][0]["amount"]) == PRICE
    bad = run["bad_input"]
    assert bad.isError and bad.structuredContent["error"]["code"] == "input_shape", bad  # the node's own code
    assert run["garbage"].isError and run["garbage"].structuredContent["error"]["code"] == "payment_invalid"
    found = run["search"].structuredContent["models"]
    assert [m["id"] for m in found if m["id"] == mlp_id] and all("tool" in m for m in found)
    assert chain.balances(agent.address) == before  # nothing charged


def test_an_api_key_pays_a_tool_call_without_x402(
        chain: Chain, mcp_node: tuple[Served, str, str], tmp_path: Path) -> None:
    served, mlp_id, _ = mcp_node
    wallet = funded_wallet(chain, "mcp-key-holder", 5_000_000)
    with Client(served.url, account=wallet, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        assert sdk.credits.buy(3 * PRICE)["status"] == "credited"
        key = sdk.keys.create(models=[mlp_id])["key"]
        before = int(sdk.credits.show()["balance"])

    async def go(headers: dict[str, str]) -> Any:
        async with streamablehttp_client(f"{served.url}/mcp", headers=headers) as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            tool = next(t.name for t in (await session.list_tools()).tools if t.name.endswith(mlp_id[-10:]))
            return await session.call_tool(tool, {"input_data": mlp_input()["input_data"]})

    paid = asyncio.run(go({"Authorization": f"Bearer {key}"}))
    assert not paid.isError, paid.content
    assert paid.structuredContent["model_id"] == mlp_id and paid.structuredContent["bundle_cid"]
    wrong = asyncio.run(go({"Authorization": "Bearer pmk_not-a-key"}))
    assert wrong.isError and wrong.structuredContent["error"]["code"] in ("api_key_invalid", "unauthorized"), wrong
    with Client(served.url, account=wallet, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        assert before - int(sdk.credits.show()["balance"]) == PRICE  # one call drawn from the key's credits
