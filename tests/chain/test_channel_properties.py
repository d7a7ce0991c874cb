"""BatchSettlement's money invariants under random sequences of calls by every actor (``channel_machine.py``): a
bounded number of sequences here (``PROOFMARKET_PROPERTY_EXAMPLES`` for more), and each invariant shown to catch a
planted bug in a copy of the contract: here by the counterexample its search found (the search: ``make mutants``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import USDC, Chain
from channel_machine import channel_machine
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from property_helpers import planted, replay_both, run_settings
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


def _bounded(state: Any) -> None:
    state.start_balances()
    voucher = state.voucher(k=0, more=1, signer="payer")
    state.finalize_withdraw(k=0, who="payer")
    state.finalize_withdraw(k=0, who="payer")
    state.claim(batch_signer=None, of_voucher=True, share="one", v=voucher, who="authorizer")


def _refund_once(state: Any) -> None:
    state.start_balances()
    for _ in range(5):
        state.deposit(amount=1, k=0, who="payer")
    state.refund_signed(back=0, k=0, share="one", signer="authorizer", who="payer")
    state.deposit(amount=1, k=0, who="payer")
    state.refund_signed(back=1, k=0, share="one", signer="authorizer", who="payer")  # the last refund's nonce again


def _paid_once(state: Any) -> None:  # written by hand (the search's own, make mutants, is 200 x 30 long)
    state.start_balances()
    state.deposit(k=0, amount=700, who="payer")
    voucher = state.voucher(k=0, more=300, signer="payer")
    state.claim(batch_signer=None, of_voucher=True, share="all", v=voucher, who="receiver")
    state.settle(r="receiver", who="stranger")
    state.settle(r="receiver", who="stranger")  # what was claimed, swept twice


# the sequence the search (the mutation lane, make mutants) found against each planted bug, shrunk by hypothesis
COUNTEREXAMPLES: dict[str, Callable[[Any], None]] = {"bounded": _bounded, "paid once": _paid_once,
                                                     "refund once": _refund_once}


def _plant(chain: Chain, tmp_path: Path, invariant: str) -> None:
    """The planted copy's code at the SDK's address (where the real contract was installed)."""
    find, replace, _ = MUTANTS[invariant]
    template, _ = chain.client.deploy(planted(tmp_path, "BatchSettlement", find, replace), chain.accounts.admin)
    chain.client.rpc("anvil_setCode", [BATCH_SETTLEMENT_ADDRESS, "0x" + chain.client.code_at(template).hex()])


@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_planted_bug_fails_its_counterexample_which_the_contract_passes(chain: Chain, bs: Any, tmp_path: Path,
                                                                            invariant: str) -> None:
    def bugged() -> type[RuleBasedStateMachine]:
        _plant(chain, tmp_path, invariant)
        return channel_machine(chain, bs)

    replay_both(chain.client, lambda: channel_machine(chain, bs), bugged, COUNTEREXAMPLES[invariant],
                MUTANTS[invariant][2])


@pytest.mark.mutants
@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_invariant_finds_its_planted_bug(chain: Chain, bs: Any, tmp_path: Path, invariant: str) -> None:
    """The mutation lane: the random sequences of the contract's own test find each planted bug."""
    _plant(chain, tmp_path, invariant)
    with pytest.raises(AssertionError, match=MUTANTS[invariant][2]):
        run_state_machine_as_test(channel_machine(chain, bs), settings=run_settings(200, steps=30, shrink=False))
