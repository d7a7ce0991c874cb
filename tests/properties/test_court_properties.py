"""AttestationCourt's invariants under random sequences of calls by every actor (``court_machine.py``): a bounded
number of sequences here (``PROOFMARKET_PROPERTY_EXAMPLES`` for more)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chain_helpers import OWNER_SHARE_BPS, PRICE, USDC, Chain, list_model
from court_machine import VALIDATORS, court_machine
from eth_utils import keccak
from hypothesis.stateful import run_state_machine_as_test
from property_helpers import planted, run_settings

from proofmarket.chain.artifacts import Artifact
from proofmarket.chain.commitments import model_id_of, model_key
from proofmarket.chain.court import AttestationCourt, CourtParams, deploy_court

pytestmark = pytest.mark.chain
WINDOWS = {"window": 300, "vote": 300, "unbond": 900, "short": 30}
NODE_STAKE, VALIDATOR_STAKE, BOND = 100 * USDC, 10 * USDC, 2 * USDC
PARAMS = CourtParams(WINDOWS["window"], WINDOWS["vote"], 200, WINDOWS["unbond"], 5_000, 10_000, 5_000, 5_000, 2_000,
                     100, BOND, NODE_STAKE, VALIDATOR_STAKE)


def test_random_sequences_never_free_a_voting_stake_nor_settle_a_request_twice(
        chain: Chain, artifact: Artifact | None = None, settings: Any = None) -> None:
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
    run_state_machine_as_test(court_machine(chain, court, key, WINDOWS, OWNER_SHARE_BPS),
                              settings=settings or run_settings(10, steps=25))


@pytest.mark.slow
def test_the_lock_invariant_finds_a_court_that_frees_a_voting_stake(chain: Chain, tmp_path: Path) -> None:
    """A planted bug: a copy of the court whose unstake forgets the open-vote lock. The same sequences find a
    validator taking its stake out while its vote is unclaimed."""
    lock = "        if (openVotes[msg.sender] > 0) revert StakeLocked(msg.sender);\n"
    artifact = planted(tmp_path, "AttestationCourt", lock, "", runs=20, via_ir=True)  # as `make contracts` does
    with pytest.raises(AssertionError, match="unstaked with"):
        test_random_sequences_never_free_a_voting_stake_nor_settle_a_request_twice(
            chain, artifact=artifact, settings=run_settings(60, steps=20, shrink=False))


@pytest.mark.slow
@pytest.mark.parametrize(("find", "replace", "said"), [
    # the challenger of a cheating node paid one unit more than its reward (taken from the platform's share)
    ("uint256 reward = (slashed * p.challengerRewardBps) / BPS;",
     "uint256 reward = (slashed * p.challengerRewardBps) / BPS + 1;", "the rules give"),
    # a losing voter loses half of what it put at risk
    ("            stake_ -= v.risk;\n", "            stake_ -= v.risk / 2;\n", "the rules give"),
], ids=["challenger_reward", "loser_risk"])
def test_the_payment_checks_find_a_court_that_pays_otherwise(chain: Chain, tmp_path: Path, find: str, replace: str,
                                                              said: str) -> None:
    """Planted bugs in the court's payments under challenges and votes: the same sequences find each."""
    artifact = planted(tmp_path, "AttestationCourt", find, replace, runs=20, via_ir=True)
    with pytest.raises(AssertionError, match=said):
        test_random_sequences_never_free_a_voting_stake_nor_settle_a_request_twice(
            chain, artifact=artifact, settings=run_settings(60, steps=20, shrink=False))
