"""The payer's timed withdrawal against a node (its own devnet: the test moves the chain's clock forward, which
would expire other tests' payment authorizations on a shared chain)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from paid_node import serve_node
from test_batch_settlement_node import PRICE, _terms, infer, sdk_session
from x402.mechanisms.evm.batch_settlement import errors as scheme_errors
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402_helpers import Chain, Served, market_devnet, node_mlp

from proofmarket.chain import dev_account
from proofmarket.chain.channels import channel_state
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.payments.batch.rail import BatchSettlementRail


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


def rail_of(node: Served) -> BatchSettlementRail:
    rail = node.app.state.services.rails.of(BatchSettlementRail)  # type: ignore[attr-defined]
    assert rail is not None and rail.sweeper is not None
    return rail


def contract_of(chain: Chain) -> Any:
    return chain.client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)


def channel_id_of(chain: Chain, config: Any) -> str:
    cfg = to_contract_channel_config(config)
    return "0x" + bytes(chain.client.call(contract_of(chain).functions.getChannelId(cfg))).hex()


def wait_claimed(chain: Chain, channel_id: str, amount: int, timeout_s: float = 90.0) -> None:
    """The node's sweeper (its own background service, not the test) claims ``amount`` on chain."""
    deadline = time.monotonic() + timeout_s
    while channel_state(chain.client, channel_id).total_claimed < amount:
        assert time.monotonic() < deadline, f"the node did not claim {amount} of channel {channel_id}"
        time.sleep(0.5)


def test_a_timed_withdrawal_after_the_node_claimed_its_charges(served_model: tuple[Served, str], chain: Chain) -> None:
    """The payer's escape hatch: initiateWithdraw, then finalizeWithdraw after the delay, without the node. Once the
    node follows the exit, it serves no voucher above the balance less the withdrawal (the one rule of
    ``payments/collectable.py``), and it claims what was charged at once."""
    node, mlp_id = served_model
    payer = dev_account(9, DEVNET_CHAIN_ID)
    session, scheme = sdk_session(payer, chain.usdc.address, deposit_calls=5)
    before = chain.balances(payer.address)[0]
    assert infer(session, node, mlp_id).status_code == 200
    config = scheme.build_channel_config(_terms(node, mlp_id))
    channel_id = channel_id_of(chain, config)
    remaining = channel_state(chain.client, channel_id).balance - 2 * PRICE  # room for one more call
    chain.client.transact(contract_of(chain).functions.initiateWithdraw(to_contract_channel_config(config),
                                                                         remaining), payer)
    rail_of(node).sweeper.follow_exits()  # what the node's sweeper does each tick (here: now, not in 5 s)

    assert infer(session, node, mlp_id).status_code == 200  # within the balance less the withdrawal
    third = infer(session, node, mlp_id)
    assert third.status_code == 402, third.text  # above it: refused before anything is served
    assert third.json()["error"]["details"]["reason"] == scheme_errors.ERR_CUMULATIVE_EXCEEDS_BALANCE
    wait_claimed(chain, channel_id, 2 * PRICE)  # claimed at once, not at the next scheduled sweep

    chain.client.rpc("evm_increaseTime", [config.withdraw_delay + 1])
    chain.client.rpc("evm_mine", [])
    chain.client.transact(contract_of(chain).functions.finalizeWithdraw(to_contract_channel_config(config)), payer)

    assert chain.balances(payer.address)[0] == before - 2 * PRICE  # two calls paid, the rest came back
    assert channel_state(chain.client, channel_id).total_claimed == 2 * PRICE
