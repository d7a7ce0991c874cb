"""A payer who arms its channel's withdrawal at once (the fifth review's critical finding), against a node of its own
devnet (the test moves the chain's clock past the withdrawal delay)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from paid_node import serve_node
from test_batch_settlement_node import PRICE, _terms, infer, sdk_session
from test_batch_settlement_withdrawal import channel_id_of, contract_of, rail_of, wait_claimed
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402_helpers import Chain, Served, funded_wallet, market_devnet, node_mlp

from proofmarket.chain.channels import channel_state


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with market_devnet(tmp_path_factory.mktemp("exit-devnet")) as chain:
        yield chain


@pytest.fixture(scope="module")
def served_model(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    home = tmp_path_factory.mktemp("exit-home")
    mlp_id = node_mlp(home, chain, home)
    with serve_node(home, home / "node.db", chain, mlp_id, PRICE) as served:
        yield served, mlp_id


def test_a_payer_that_arms_its_exit_at_once_pays_for_every_call_it_was_served(
        served_model: tuple[Served, str], chain: Chain) -> None:
    """The fifth review's critical finding: a payer opens a channel, arms a withdrawal of everything at once, and
    keeps calling, also after the delay. The node serves no further than it can claim before the exit is final
    (a voucher it served before it saw the exit is claimed at once by its sweeper, on its own), so the payer's
    exit returns exactly what was not served."""
    node, mlp_id = served_model
    payer = funded_wallet(chain, "exit-at-once", 1_000_000)
    session, scheme = sdk_session(payer, chain.usdc.address, deposit_calls=6)
    before = chain.balances(payer.address)[0]
    assert infer(session, node, mlp_id).status_code == 200
    config = scheme.build_channel_config(_terms(node, mlp_id))
    channel_id = channel_id_of(chain, config)
    onchain = channel_state(chain.client, channel_id)
    chain.client.transact(contract_of(chain).functions.initiateWithdraw(to_contract_channel_config(config),
                                                                         onchain.available), payer)

    statuses = [infer(session, node, mlp_id).status_code for _ in range(3)]  # the node may not know yet
    chain.client.rpc("evm_increaseTime", [config.withdraw_delay + 1])  # the exit can be finalized now
    chain.client.rpc("evm_mine", [])
    statuses += [infer(session, node, mlp_id).status_code for _ in range(3)]
    assert statuses[-3:] == [402] * 3  # past the delay, nothing is served on a channel being emptied

    served = 1 + statuses.count(200)
    charged = int(rail_of(node).storage.get(channel_id).charged_cumulative_amount)  # type: ignore[union-attr]
    assert charged == served * PRICE
    wait_claimed(chain, channel_id, charged)  # by the sweeper's own loop: it followed the exit's event
    chain.client.transact(contract_of(chain).functions.finalizeWithdraw(to_contract_channel_config(config)), payer)
    assert channel_state(chain.client, channel_id).total_claimed == charged  # the node holds what it served
    assert chain.balances(payer.address)[0] == before - charged  # and the payer paid for every call it got
    assert infer(session, node, mlp_id).status_code in (200, 402)  # a new deposit may reopen it; never free
