"""MCP tool calls paid from a batch-settlement channel through ``x402.mcp``: the first call deposits, the next pay
with vouchers; the settlement the tool answers in ``_meta`` carries the channel's state, which the agent's scheme
reads (its ``on_payment_response`` hook) so the next voucher builds on the node's charged total."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from paid_node import serve_node
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentResponseContext
from x402_helpers import Chain, Served, funded_wallet, mlp_input

from proofmarket.chain.devkeys import DEVNET_CHAIN_ID

PRICE = 2_500
CALLS = 3


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROOFMARKET_CHANNEL_MIN_DEPOSIT_CALLS", "4")
        with serve_node(home, tmp_path_factory.mktemp("mcp-channel-db") / "node.db", chain, mlp_id,
                        PRICE) as served:
            yield served


def test_an_agent_pays_tool_calls_from_a_channel(node: Served, chain: Chain, mlp_id: str) -> None:
    agent = funded_wallet(chain, "mcp-channel-agent", 40 * PRICE)
    start = chain.balances(agent.address)[0]
    scheme = BatchSettlementEvmScheme(EthAccountSigner(agent), BatchSettlementDepositPolicy(deposit_multiplier=4))
    payer = x402Client()
    payer.register(f"eip155:{DEVNET_CHAIN_ID}", scheme)
    payer.set_spend_controls({"allowed_assets": [{"network": f"eip155:{DEVNET_CHAIN_ID}",
                                                  "asset": chain.usdc.address}]})

    async def go() -> list[Any]:
        results = []
        async with streamablehttp_client(f"{node.url}/mcp") as (read, write, _), \
                ClientSession(read, write) as session:
            mcp = x402MCPSession(session, payer)
            await mcp.initialize()
            tool = next(t.name for t in (await mcp.list_tools()).tools if t.name.endswith(mlp_id[-10:]))
            for _ in range(CALLS):
                result = await mcp.call_tool(tool, {"input_data": mlp_input()["input_data"]})
                results.append(result)
                if result.payment_response is not None:  # the agent's scheme reads the node's charged total
                    # (x402MCPSession does not call the scheme's hook itself: without this the next voucher is
                    # stale and the node answers the channel's state as a corrective 402)
                    payload, requirements = paid[-1]
                    scheme.scheme_hooks.on_payment_response(PaymentResponseContext(
                        payment_payload=payload, requirements=requirements, settle_response=result.payment_response))
        return results

    paid: list[tuple[Any, Any]] = []  # each payment the agent made, with the terms it paid
    original = payer.create_payment_payload

    async def remember(required: Any, *args: Any, **kwargs: Any) -> Any:
        payload = await original(required, *args, **kwargs)
        paid.append((payload, payload.accepted))
        return payload

    payer.create_payment_payload = remember  # type: ignore[method-assign,assignment]
    results = asyncio.run(go())
    assert all(not r.is_error and r.payment_made for r in results), [r.content for r in results]
    assert all(r.payment_response is not None and r.payment_response.success for r in results)
    assert start - chain.balances(agent.address)[0] == 4 * PRICE  # one deposit, no transfer per call
