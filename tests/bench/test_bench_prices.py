"""bench/prices.py: the stated prices turn gas into US dollars (the USD columns of bench/gas.md)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from script_module import load_script

PRICES_PY = Path(__file__).resolve().parents[2] / "bench" / "prices.py"


@pytest.fixture
def prices() -> ModuleType:
    return load_script(PRICES_PY, "proofmarket_bench_prices")


def test_gas_turns_into_dollars_at_the_stated_prices(prices: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prices, "ETH_USD", 2_000.0)
    monkeypatch.setattr(prices, "L2_GAS_GWEI", {"Base": 0.01, "Arbitrum": 0.02})
    assert prices.l2_usd(1_000_000, "Base") == pytest.approx(0.02)  # 1e6 gas * 0.01 gwei = 1e-5 ETH
    assert prices.l2_usd(1_000_000, "Arbitrum") == pytest.approx(0.04)
    monkeypatch.setattr(prices, "L1_GAS_GWEI", 2.0)
    assert prices.l1_data_bound_usd(1_000) == pytest.approx(1_000 * 16 * 2e-9 * 2_000)  # 16 L1 gas a byte
    with pytest.raises(KeyError):
        prices.l2_usd(1, "Optimism")  # only the chains whose price is stated


def test_dollars_and_the_stated_assumptions(prices: ModuleType) -> None:
    assert prices.dollars(0.01234) == "$0.0123"
    assert prices.dollars(1.3181) == "$1.32"
    stated = prices.assumptions()
    assert set(stated["l2_gas_gwei"]) == {"Base", "Arbitrum"} and stated["eth_usd"] > 0
    text = prices.legend()
    for fact in (prices.PRICES_CHOSEN, "Base 0.005 gwei", "Arbitrum 0.01 gwei", "$3,000", "L1 data fee is extra"):
        assert fact in text, fact
