"""The payer's timed withdrawal against a node (its own devnet: the test moves the chain's clock forward, which
would expire other tests' payment authorizations on a shared chain)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from paid_node import ADMIN, serve_node
from test_batch_settlement_node import PRICE, _terms, infer, sdk_session
from x402_helpers import Chain, Served, market_devnet, node_mlp

from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with market_devnet(tmp_path_factory.mktemp("withdrawal-devnet")) as chain:
        yield chain


@pytest.fixture(scope="module")
def served_model(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    home = tmp_path_factory.mktemp("withdrawal-home")
    mlp_id = node_mlp(home, chain, home)
    with serve_node(home, home / "node.db", chain, mlp_id, PRICE) as served:
        yield served, mlp_id


def test_a_timed_withdrawal_after_the_node_claimed_its_charges(served_model: tuple[Served, str], chain: Chain) -> None:
    """The payer's escape hatch: initiateWithdraw, then finalizeWithdraw after the delay, without the node. The node
    reads the chain on every call of a channel being withdrawn, and its sweep claims what was charged first."""
    from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
    from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
    from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config

    node, mlp_id = served_model
    payer = dev_account(9, DEVNET_CHAIN_ID)
    session, scheme = sdk_session(payer, chain.usdc.address, deposit_calls=5)
    before = chain.balances(payer.address)[0]
    assert infer(session, node, mlp_id).status_code == 200
    channel = requests.get(f"{node.url}/v1/channels", params={"payer": payer.address}, timeout=30,
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()["channels"][0]
    config = scheme.build_channel_config(_terms(node, mlp_id))
    contract = chain.client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)
    remaining = int(channel["balance"]) - PRICE
    chain.client.transact(contract.functions.initiateWithdraw(to_contract_channel_config(config), remaining), payer)

    second = infer(session, node, mlp_id)  # still allowed: the balance is there until finalized
    assert second.status_code == 200, second.text
    swept = requests.post(f"{node.url}/v1/channels/sweep", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
    assert swept.status_code == 200, swept.text

    chain.client.rpc("evm_increaseTime", [config.withdraw_delay + 1])
    chain.client.rpc("evm_mine", [])
    chain.client.transact(contract.functions.finalizeWithdraw(to_contract_channel_config(config)), payer)

    assert chain.balances(payer.address)[0] == before - 2 * PRICE  # two calls paid, the rest came back
    third = infer(session, node, mlp_id)  # the channel is empty now: the node read the chain, nothing charged
    assert third.status_code in (200, 402)
