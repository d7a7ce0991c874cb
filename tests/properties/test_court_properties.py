"""AttestationCourt's invariants under random sequences of calls by every actor (``court_machine.py``): a bounded
number of sequences here (``PROOFMARKET_PROPERTY_EXAMPLES`` for more); each invariant's planted bug fails the
counterexample its search found (the search itself: the mutation lane, ``make mutants``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chain_helpers import OWNER_SHARE_BPS, PRICE, USDC, Chain, list_model
from court_machine import VALIDATORS, court_machine
from eth_utils import keccak
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from property_helpers import planted, replay_both, run_settings

from proofmarket.chain.artifacts import Artifact
from proofmarket.chain.commitments import model_id_of, model_key
from proofmarket.chain.court import AttestationCourt, CourtParams, deploy_court

pytestmark = pytest.mark.chain
WINDOWS = {"window": 300, "vote": 300, "unbond": 900, "short": 30}
NODE_STAKE, VALIDATOR_STAKE, BOND = 100 * USDC, 10 * USDC, 2 * USDC
PARAMS = CourtParams(WINDOWS["window"], WINDOWS["vote"], 200, WINDOWS["unbond"], 5_000, 10_000, 5_000, 5_000, 2_000,
                     100, BOND, NODE_STAKE, VALIDATOR_STAKE)


def court_world(chain: Chain, artifact: Artifact | None = None) -> type[RuleBasedStateMachine]:
    """A court (``artifact``: a planted copy) with the attested model listed, the node and three validators staked
    and declared, the consumer's approval: its state machine."""
    a = chain.accounts
    address, _ = deploy_court(chain.client, a.admin, chain.usdc.address, chain.registry.address, a.admin.address,
                              PARAMS.as_tuple(), 200, artifact=artifact)
    court = AttestationCourt(chain.client, address)
    list_model(chain, "bafy-attested", vk_digest=keccak(text="proofmarket-attested-toploc-v1"),
               onnx_sha256=b"\x11" * 32, input_instances=1, instance_count=5)
    key = model_id_of(a.owner.address, model_key("bafy-attested"))
    for who, amount, validator in [(a.prover, NODE_STAKE, False),
                                   *((getattr(a, n), 4 * VALIDATOR_STAKE, True) for n in VALIDATORS)]:
        chain.client.rpc("anvil_setBalance", [who.address, hex(10**18)])
        chain.usdc.mint(who.address, amount + 100 * USDC, a.admin)
        chain.usdc.approve(court.address, amount + 100 * USDC, who)
        court.stake(amount, who, validator=validator)
        if validator:
            court.declare(key, who)
    chain.usdc.approve(court.address, 1_000 * PRICE, a.consumer)
    chain.client.rpc("evm_mine", [])  # declarations count from the next block
    return court_machine(chain, court, key, WINDOWS, OWNER_SHARE_BPS)


def test_random_sequences_never_free_a_voting_stake_nor_settle_a_request_twice(chain: Chain) -> None:
    run_state_machine_as_test(court_world(chain), settings=run_settings(10, steps=25))


MUTANTS = {  # a rule of the court changed, and what the machine then says
    # unstake forgets the open-vote lock: a validator takes its stake out while its vote is unclaimed
    "lock": ("        if (openVotes[msg.sender] > 0) revert StakeLocked(msg.sender);\n", "", "unstaked with"),
    # the challenger of a cheating node paid one unit more than its reward (taken from the platform's share)
    "challenger_reward": ("uint256 reward = (slashed * p.challengerRewardBps) / BPS;",
                          "uint256 reward = (slashed * p.challengerRewardBps) / BPS + 1;", "the rules give"),
    # a losing voter loses half of what it put at risk
    "loser_risk": ("            stake_ -= v.risk;\n", "            stake_ -= v.risk / 2;\n", "the rules give"),
}


def _lock(state: Any) -> None:
    state.start()
    request = state.committed_request(x=1)
    state.challenge(rid=request, who="prover2")
    state.vote_then_leave(cheated=False, rid=request, who="prover2")


def _loser_risk(state: Any) -> None:
    state.start()
    state.contested(challenger="prover2", cheated=[False, False, False], x=1)


def _challenger_reward(state: Any) -> None:
    state.start()
    for _ in range(4):
        state.wait(seconds="window")
    state.move_stake(amount=1, what="stake", who="prover2")
    state.withdraw_platform(amount=1, who="consumer")
    state.contested(challenger="relayer", cheated=[True, False, False], x=1)


# the sequence the search (the mutation lane, make mutants) found against each planted bug, shrunk by hypothesis
COUNTEREXAMPLES = {"lock": _lock, "challenger_reward": _challenger_reward, "loser_risk": _loser_risk}


@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_planted_bug_fails_its_counterexample_which_the_court_passes(chain: Chain, tmp_path: Path,
                                                                         invariant: str) -> None:
    """The court passes each counterexample; its planted copy fails it, with the invariant's words."""
    find, replace, says = MUTANTS[invariant]
    artifact = planted(tmp_path, "AttestationCourt", find, replace, runs=20, via_ir=True)  # as `make contracts` does
    replay_both(chain.client, lambda: court_world(chain), lambda: court_world(chain, artifact),
                COUNTEREXAMPLES[invariant], says)


@pytest.mark.mutants
@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_invariant_finds_its_planted_bug(chain: Chain, tmp_path: Path, invariant: str) -> None:
    """The mutation lane: the same random sequences as the court's own test find each planted bug."""
    find, replace, says = MUTANTS[invariant]
    artifact = planted(tmp_path, "AttestationCourt", find, replace, runs=20, via_ir=True)
    with pytest.raises(AssertionError, match=says):
        run_state_machine_as_test(court_world(chain, artifact), settings=run_settings(60, steps=20, shrink=False))
