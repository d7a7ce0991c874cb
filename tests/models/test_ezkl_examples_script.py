"""scripts/ezkl_examples.py's count: what it calls accepted, refused, crashed and over time, and which models
over time are predicted not to fit the limit at all (their key setup and one proof alone take longer)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from script_module import load_script


def load() -> ModuleType:
    return load_script(Path("scripts/ezkl_examples.py"), "proofmarket_ezkl_examples")


def test_the_count_and_the_models_that_cannot_fit_the_limit() -> None:
    script = load()
    rows = [
        {"model": "ok", "ezkl": "compiles", "proofmarket": "accepted", "seconds": 3.0},
        {"model": "op", "ezkl": "compiles", "proofmarket": "refused (unsupported_operator): Equal"},
        {"model": "big", "ezkl": "compiles", "proofmarket": "over 20 s", "seconds": 20.0,
         "predicted": {"logrows": 20, "setup_s": 221.0, "prove_s": 260.0}},
        {"model": "mid", "ezkl": "compiles", "proofmarket": "over 20 s", "seconds": 20.0,
         "predicted": {"logrows": 14, "setup_s": 4.3, "prove_s": 5.1}},
        {"model": "gone", "ezkl": "no network.onnx/input.json", "proofmarket": "not run"},
    ]
    assert script.summary(rows) == {"folders": 5, "ezkl_compiles": 4, "accepted": 1, "refused": 1, "crashed": 0,
                                    "over_time": 2, "accepted_in_all": 1}
    assert script.cannot_fit(rows[2], 20.0) and not script.cannot_fit(rows[3], 20.0)
    table = script.markdown(rows, 20.0)
    assert "accepts **1 (25%)**" in table and "Of those over 20 s, 1 are predicted" in table
    assert "| big | compiles | over 20 s (predicted logrows 20: key setup ~221 s, prove ~260 s) | 20.0 |" in table


def test_a_compile_without_its_json_error_is_a_crash() -> None:
    script = load()
    assert script.classify(1, "Traceback ...", "boom", 20.0)["proofmarket"].startswith("crashed (exit 1)")
    assert script.classify(None, "", "", 20.0) == {"proofmarket": "over 20 s"}
    refused = script.classify(2, '{"ok": false, "error": {"code": "accuracy_not_met", "message": "m"}}', "", 20.0)
    assert refused["proofmarket"] == "refused (accuracy_not_met): m"
