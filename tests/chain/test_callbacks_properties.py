"""CourtCallbacks' invariants under random sequences of calls (``callbacks_machine.py``): a bounded number of
sequences here (``PROOFMARKET_PROPERTY_EXAMPLES`` for more), and each invariant shown to catch a planted bug in a copy
of the contract: here by the counterexample its search found (the search: ``make mutants``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from callbacks_machine import CONSUMERS, callbacks_machine
from chain_helpers import TEST_ARTIFACTS, USDC, Chain
from hypothesis.stateful import run_state_machine_as_test
from property_helpers import planted, replay_both, run_settings
from test_chain_court import FEE_BPS, _setup

from proofmarket.chain.artifacts import Artifact, load_artifact, load_artifact_file

pytestmark = pytest.mark.chain


def _world(chain: Chain, artifact: Artifact) -> tuple[Any, ...]:
    court, key = _setup(chain)
    a = chain.accounts
    address, _ = chain.client.deploy(artifact, a.admin, court.address)
    callbacks = chain.client.contract(address, artifact.abi)
    consumer_art = load_artifact_file(TEST_ARTIFACTS / "TestAttestedConsumer.json")
    consumers = {}
    for name, mode in zip(CONSUMERS, (0, 1), strict=True):
        consumer, _ = chain.client.deploy(consumer_art, a.admin, address, mode)
        chain.usdc.mint(consumer, 500 * USDC, a.admin)
        consumers[name] = chain.client.contract(consumer, consumer_art.abi)
    return court, key, callbacks, consumers, FEE_BPS


def test_random_sequences_never_let_a_callback_change_a_payment(chain: Chain) -> None:
    run_state_machine_as_test(callbacks_machine(chain, *_world(chain, load_artifact("CourtCallbacks"))),
                              settings=run_settings(8, steps=25))


MUTANTS = {  # the contract's rule taken out, and what the machine then says (its assertion's words)
    "tip once": ("            e.done = true;\n            if (e.tip > 0)", "            if (e.tip > 0)",
                 "delivered while|holds|tips come to"),
    "reclaim only refunded": ("        if (r.status != AttestationCourt.Status.Refunded && r.status != "
                              "AttestationCourt.Status.Slashed) {\n"
                              "            revert NotRefunded(requestId, r.status);\n        }\n", "",
                              "reclaimed while|holds|consumer holds"),
}


def _tip_once(state: Any) -> None:
    state.start_balances()
    state.misbehave(mode=0)
    request = state.paid_request(keeper="relayer", tip=0, who="recorder", x=1)
    state.deliver_twice(first="relayer", rid=request, second="relayer")


def _reclaim_only_refunded(state: Any) -> None:
    state.start_balances()
    request = state.paid_request(keeper="relayer", tip=0, who="recorder", x=1)
    state.paid_request(keeper="relayer", tip=3_000_000, who="recorder", x=1)
    state.reclaim(rid=request, who="relayer")


# the sequence the search (the mutation lane, make mutants) found against each planted bug, shrunk by hypothesis
COUNTEREXAMPLES: dict[str, Callable[[Any], None]] = {"tip once": _tip_once,
                                                     "reclaim only refunded": _reclaim_only_refunded}


def _planted(tmp_path: Path, invariant: str) -> Artifact:
    find, replace, _ = MUTANTS[invariant]
    return planted(tmp_path, "CourtCallbacks", find, replace, runs=20, via_ir=True)  # as the court it imports


@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_planted_bug_fails_its_counterexample_which_the_contract_passes(chain: Chain, tmp_path: Path,
                                                                            invariant: str) -> None:
    replay_both(chain.client, lambda: callbacks_machine(chain, *_world(chain, load_artifact("CourtCallbacks"))),
                lambda: callbacks_machine(chain, *_world(chain, _planted(tmp_path, invariant))),
                COUNTEREXAMPLES[invariant], MUTANTS[invariant][2])


@pytest.mark.mutants
@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_invariant_finds_its_planted_bug(chain: Chain, tmp_path: Path, invariant: str) -> None:
    """The mutation lane: the random sequences of the contract's own test find each planted bug."""
    machine = callbacks_machine(chain, *_world(chain, _planted(tmp_path, invariant)))
    with pytest.raises(AssertionError, match=MUTANTS[invariant][2]):
        run_state_machine_as_test(machine, settings=run_settings(100, steps=25, shrink=False))
