"""BatchSettlement's money invariants under random sequences of calls by every actor (``channel_machine.py``): a
bounded number of sequences here (``PROOFMARKET_PROPERTY_EXAMPLES`` for more), and each invariant shown to catch a
planted bug in a copy of the contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import USDC, Chain
from channel_machine import channel_machine
from hypothesis.stateful import run_state_machine_as_test
from property_helpers import planted, run_settings
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS

from proofmarket.chain.channels import install_batch_settlement

pytestmark = pytest.mark.chain


@pytest.fixture
def bs(chain: Chain) -> Iterator[Any]:
    install_batch_settlement(chain.client)
    chain.usdc.mint(chain.accounts.consumer.address, 1_000 * USDC, chain.accounts.admin)
    yield chain.client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)


def test_random_sequences_keep_the_channels_solvent_and_pay_each_claim_once(chain: Chain, bs: Any) -> None:
    run_state_machine_as_test(channel_machine(chain, bs), settings=run_settings(10, steps=30))


# the contract's rule taken out, and what the machine then says (its assertion's words)
MUTANTS = {
    "bounded": ("        if (c.totalClaimed > state.balance) revert ClaimAboveBalance(id);\n", "",
                "claimed|went through"),
    "paid once": ("        state.totalSettled = state.totalClaimed;\n", "", "was paid|holds"),
    "refund once": ("        if (nonce != refundNonce[id]) revert BadRefundNonce(refundNonce[id]);\n", "",
                    "a refund of"),
}


@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_invariant_finds_its_planted_bug(chain: Chain, bs: Any, tmp_path: Path, invariant: str) -> None:
    find, replace, says = MUTANTS[invariant]
    artifact = planted(tmp_path, "BatchSettlement", find, replace)
    template, _ = chain.client.deploy(artifact, chain.accounts.admin)  # the planted copy at the SDK's address
    chain.client.rpc("anvil_setCode", [BATCH_SETTLEMENT_ADDRESS, "0x" + chain.client.code_at(template).hex()])
    with pytest.raises(AssertionError, match=says):
        run_state_machine_as_test(channel_machine(chain, bs), settings=run_settings(200, steps=30, shrink=False))
