"""Smoke test for the gas bench: bench/gas.py on the MLP (fixed settings), into a temp dir."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from market_helpers import anvil_or_skip
from script_module import load_script

GAS_PY = Path(__file__).resolve().parents[2] / "bench" / "gas.py"

pytestmark = [pytest.mark.slow, pytest.mark.chain]


def load_gas_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(GAS_PY.parent))  # gas.py imports bench/prices.py, as when run as a script
    return load_script(GAS_PY, "proofmarket_bench_gas")


def test_gas_bench_measures_every_step_of_the_mlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    anvil_or_skip()
    bench = load_gas_bench(monkeypatch)
    attested = "\n## Attested tier (AttestationCourt) and ERC-8004\n\n| court deploy | 1 |\n"
    (tmp_path / "gas.md").write_text("an older table\n" + attested)  # gas_attested.py's section of an earlier run
    assert bench.main(["--models", "mlp", "--grid", "fixed", "--out", str(tmp_path)]) == 0

    doc = json.loads((tmp_path / "gas.json").read_text())
    (row,) = doc["rows"]
    assert row["model"] == "mlp" and row["error"] is None and row["fulfil_ok"] is True
    for step in (*bench.COLUMNS, bench.X402_STEP, "deploy USDC", "deploy ModelRegistry", "deploy InferenceMarket",
                 "deploy AttestationCourt"):
        assert row["gas"][step] > 21_000, step
    assert row["contracts"][0] == "USDC" and len(row["contracts"]) == len(set(row["contracts"])) >= 9
    assert row["gas"]["verifyProof alone"] < row["gas"]["fulfill (steady)"] <= row["gas"]["fulfill (first)"]
    assert row["target"] == ("PASS" if row["gas"][bench.TARGET_STEP] <= bench.FULFIL_TARGET else "MISS")
    md = (tmp_path / "gas.md").read_text()
    assert "| mlp | b256x3-s10-c1 |" in md
    assert md.endswith(attested) and "an older table" not in md  # the table rewritten, the attested section kept

    # the USD table: each sent transaction's signed size, and its cost at the prices bench/prices.py states
    prices = sys.modules["prices"]
    assert doc["prices"] == prices.assumptions()
    for step in (*bench.COLUMNS, bench.X402_STEP, "deploy InferenceMarket"):
        if step != "verifyProof alone":  # an estimate, no transaction
            assert row["tx_bytes"][step] > 100, step
    assert row["tx_bytes"]["fulfill (steady)"] > row["proof_bytes"]  # the proof travels in the fulfilment
    gas, size = row["gas"]["fulfill (steady)"], row["tx_bytes"]["fulfill (steady)"]
    cells = [f"{gas:,}", f"{size:,}", prices.dollars(prices.l2_usd(gas, "Base")),
             prices.dollars(prices.l2_usd(gas, "Arbitrum")), prices.dollars(prices.l1_data_bound_usd(size))]
    assert "| fulfill (steady) | mlp | " + " | ".join(cells) + " |" in md
    assert f"chosen {prices.PRICES_CHOSEN}" in md
