"""InferenceMarket's money invariants under random sequences of calls by every actor (``market_machine.py``): a
bounded number of sequences here (``PROOFMARKET_PROPERTY_EXAMPLES`` for more), and each invariant shown to catch a
planted bug in a copy of the contract (``test_market_mutants.py``)."""

from __future__ import annotations

import pytest
from chain_helpers import USDC, Chain, Listed, list_model, stake_prover
from hypothesis.stateful import run_state_machine_as_test
from market_machine import market_machine
from property_helpers import run_settings

pytestmark = pytest.mark.chain


def world(chain: Chain) -> Listed:
    """A model (MockVerifier), two staked authorised provers, a consumer who approved the market."""
    listed = list_model(chain)
    for prover in (chain.accounts.prover, chain.accounts.prover2):  # the minimum and 40 claims' bonds
        stake_prover(chain, prover, chain.market.min_stake() + 40 * chain.market.params().claim_bond)
    chain.usdc.approve(chain.market.address, 1_000 * USDC, chain.accounts.consumer)
    return listed


def test_random_sequences_of_calls_keep_the_market_solvent_and_pay_each_request_once(chain: Chain) -> None:
    run_state_machine_as_test(market_machine(chain, world(chain)), settings=run_settings(12))

