"""bench/economics.py: the closed form and the seeded simulation agree, and at the default terms cheating and
griefing lose money while an honest node earns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ECONOMICS_PY = Path(__file__).resolve().parents[2] / "bench" / "economics.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proofmarket_bench_economics", ECONOMICS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
