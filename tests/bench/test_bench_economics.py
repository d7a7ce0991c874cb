"""bench/economics.py: the closed form and the seeded simulation agree, and at the default terms cheating and
griefing lose money while an honest node earns."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from script_module import load_script

ECONOMICS_PY = Path(__file__).resolve().parents[2] / "bench" / "economics.py"


def _load() -> ModuleType:
    return load_script(ECONOMICS_PY, "proofmarket_bench_economics")


def test_cheating_and_griefing_lose_and_the_simulation_agrees() -> None:
    eco = _load()
    terms = eco.Terms()
    closed = eco.expected(terms)
    assert closed["honest"] > 0 > closed["cheat"] and closed["griefer"] < 0
    always = eco.simulate(terms, 1.0, 40_000, seed=1, grief_rate=0.0)
    assert abs(always["node_per_call"] - closed["cheat"]) < 0.06
    honest = eco.simulate(terms, 0.0, 10_000, seed=2, grief_rate=0.0)
    assert abs(honest["node_per_call"] - closed["honest"]) < 1e-9 and honest["slashed"] == 0
    assert eco.majority(5, 0.8) > 0.9 and eco.majority(5, 0.4) < 0.5


def test_a_dishonest_validator_majority_breaks_the_deterrence() -> None:
    eco = _load()
    weak = eco.expected(eco.Terms(dishonest_share=0.4))
    assert weak["cheat"] > 0 and weak["min_slash"] > eco.Terms().slash


@pytest.mark.chain  # an anvil of its own
def test_the_court_game_on_chain_refuses_a_rented_verdict_and_makes_griefing_lose() -> None:
    """bench/court_game.py on anvil with the devnet parameters: sybil stake equal to the honest stake loses, more
    than half wins (the trust assumption), a griefer loses its bond and share, honest voters earn from it."""
    import pytest

    from proofmarket.chain import find_anvil
    from proofmarket.chain.deploy import DEVNET_COURT_PARAMS

    try:
        find_anvil()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"anvil is not installed: {exc}")
    sys.path.insert(0, str(ECONOMICS_PY.parent))
    import court_game

    game = court_game.play("devnet", DEVNET_COURT_PARAMS)
    assert game["tie"]["outcome"] == "honest" and game["tie"]["attacker"] < 0 < game["tie"]["honest_validators"]
    assert game["bought"]["wrong_verdict"] and game["bought"]["attacker_stake"] > game["honest_stake"]
    assert game["grief"]["griefer"] < 0 < game["grief"]["honest_per_vote"]
    assert game["availability"]["griefer"] == 0
