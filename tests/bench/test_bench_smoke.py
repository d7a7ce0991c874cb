"""Smoke test for make bench: bench/run.py --quick on the MLP's public profile, into a temp dir."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from script_module import load_script

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"
NUMERIC = ("logrows", "setup_s", "prove_s", "verify_ms", "pk_mb", "max_abs_error")


def load_bench() -> ModuleType:
    return load_script(RUN_PY, "proofmarket_bench_run")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_writes_three_rows(tmp_path: Path) -> None:
    bench = load_bench()
    out = tmp_path / "out"
    assert bench.main(["--quick", "--profiles", "public", "--out", str(out)]) == 0

    doc = json.loads((out / "results.json").read_text())
    assert doc["machine"]["cpu_count"] and doc["machine"]["ezkl"]
    rows = {r["row"]: r for r in doc["rows"] if (r["model"], r["profile"]) == ("mlp", "public")}
    assert set(rows) == {"onnxruntime", "ezkl-default", "tuned"}
    assert all(r["error"] is None for r in rows.values())
    assert isinstance(rows["onnxruntime"]["inference_ms"], float)
    for kind in ("ezkl-default", "tuned"):
        for key in NUMERIC:
            assert isinstance(rows[kind][key], int | float), (kind, key, rows[kind][key])
        assert len(rows[kind]["prove_runs_s"]) == 2
    tuned = rows["tuned"]
    assert tuned["logrows"] < rows["ezkl-default"]["logrows"]
    assert isinstance(tuned["speedup_vs_default"], float) and tuned["search"]["seconds"] > 0
    assert set(tuned["targets"].values()) <= {"PASS", "MISS", "n/a"}
    table = (out / "results.md").read_text()
    assert "| mlp | public | tuned |" in table


def test_kzg_input_profile_is_a_measurement_only() -> None:
    """The KZG-input rows salt the input like the hashed profile, but no model can be compiled that way."""
    from proofmarket.core.errors import UsageError
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    bench = load_bench()
    kzg = bench.KzgInput.of(PrivacyProfile.parse("private-input"))
    assert (kzg.input, kzg.params, kzg.salted) == ("polycommit", "fixed", True)
    with pytest.raises(UsageError):
        PrivacyProfile.parse("input=polycommit,params=fixed")


def test_a_hashed_miss_cites_the_kzg_rows() -> None:
    bench = load_bench()
    machine = {"date": "d", "cpu_count": 2, "platform": "p", "ezkl": "e", "onnxruntime": "o"}
    settings = {"decomp_base": 16384, "decomp_legs": 2, "input_scale": 13, "scale_rebase_multiplier": 1,
                "num_inner_cols": 2}
    default = bench.Row("cnn", "private-input", "ezkl-default", logrows=15, prove_s=4.0, settings=settings)
    tuned = bench.Row("cnn", "private-input", "tuned", logrows=12, prove_s=0.5, speedup_vs_default=8.0,
                      targets={"speedup>=10x": "MISS"})
    kzg_default = bench.Row("cnn", "private-input", "ezkl-default" + bench.KZG_SUFFIX, logrows=15, prove_s=2.5)
    kzg_tuned = bench.Row("cnn", "private-input", "tuned" + bench.KZG_SUFFIX, logrows=11, prove_s=0.25,
                          speedup_vs_default=16.0)
    table = bench.markdown([default, tuned, kzg_default, kzg_tuned], machine, 5)
    miss = next(line for line in table.splitlines() if line.startswith("- cnn private-input:"))
    assert "2^11 rows and proves in 0.25 s: 16x these defaults (10x EZKL's defaults with the same KZG" in miss
    assert 'Rows ending "kzg input"' in table
    # without KZG rows, neither the note nor the footnote appears
    plain = bench.markdown([default, tuned], machine, 5)
    assert "KZG instead, the tuned" not in plain and "Rows ending" not in plain
