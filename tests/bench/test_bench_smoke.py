"""Smoke test for make bench: bench/run.py --quick on the MLP's public profile, into a temp dir."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"
NUMERIC = ("logrows", "setup_s", "prove_s", "verify_ms", "pk_mb", "max_abs_error")


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proofmarket_bench_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


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
