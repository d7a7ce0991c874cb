"""Know the limits before proving: the cost prediction, `compile --dry-run`, and the budget refusal."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proofmarket.core.errors import ModelOverBudget
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.predict import PROVE_S_BASE, Budget, from_settings


def _settings(logrows: int, cols: int, lookups: int = 0) -> dict[str, object]:
    return {"run_args": {"logrows": logrows, "num_inner_cols": cols}, "num_rows": 2 ** logrows - 10,
            "required_lookups": [{"Relu": {}}] * lookups, "required_range_checks": []}


def test_costs_grow_with_rows_columns_and_lookups() -> None:
    small, more_rows = from_settings(_settings(10, 1)), from_settings(_settings(12, 1))
    more_cols, lookups = from_settings(_settings(10, 4)), from_settings(_settings(10, 1, lookups=3))
    base = PROVE_S_BASE  # a proof's fixed cost; the rest follows the work
    assert more_rows.prove_s - base == pytest.approx(4 * (small.prove_s - base)) and more_rows.pk_mb > small.pk_mb
    assert more_cols.prove_s > small.prove_s and lookups.prove_s > small.prove_s
    assert small.peak_rss_mb > small.pk_mb  # the prover holds the key and more


def test_a_model_over_budget_is_refused_with_the_numbers() -> None:
    prediction = from_settings(_settings(20, 2, lookups=2))
    Budget(max_logrows=22, max_prove_s=1e6, max_memory_mb=1e9).check(prediction)
    with pytest.raises(ModelOverBudget) as info:
        Budget(max_logrows=18, max_prove_s=1.0, max_memory_mb=1e9).check(prediction)
    assert info.value.code == "model_over_budget" and info.value.http_status == 422
    assert "logrows 20 > 18" in info.value.message and "prove ~" in info.value.message
    assert info.value.details["prediction"]["logrows"] == 20
    # how many slices of the graph would fit: the prove time over its limit by the most here
    slices = info.value.details["slices"]
    assert slices == math.ceil(prediction.prove_s / 1.0) and f"at least {slices} slices" in info.value.message
    assert Budget(max_logrows=18, max_prove_s=1e6, max_memory_mb=1e9).slices(prediction) == 4  # 2^20 / 2^18 rows
    assert Budget(max_logrows=22, max_prove_s=prediction.prove_s / 10, max_memory_mb=1e9).slices(prediction) == 10


def test_a_circuit_sized_by_its_range_check_says_so_and_one_sized_by_its_rows_does_not() -> None:
    """The pipeline model (a scaler inside, inputs in the thousands) costs 16-32x the same model on scaled inputs: the
    dry run names the range check that sets its size (issue 72). Settings as EZKL 23 writes them for both."""
    wide = {"run_args": {"logrows": 15, "num_inner_cols": 2, "decomp_base": 16384, "decomp_legs": 2,
                         "input_scale": 10, "lookup_range": [0, 0]},
            "num_rows": 426, "required_lookups": [], "required_range_checks": [[0, 16383], [-1, 1]]}
    said = from_settings(wide, max_input=2501.0)
    assert "range check of 16,384 values (2^14 rows" in said.sized_by and "(426 rows, 2^9)" in said.sized_by
    assert "inputs reach 2,501" in said.sized_by and "32x smaller" in said.sized_by
    assert said.summary().splitlines()[1].startswith("why this size:")
    narrow = dict(wide, num_rows=559, run_args=dict(wide["run_args"], decomp_base=256, logrows=10),  # type: ignore[arg-type]
                  required_range_checks=[[0, 255], [-1, 1]])
    assert from_settings(narrow).sized_by == "" and len(from_settings(narrow).summary().splitlines()) == 1


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}, "PROOFMARKET_HOME": str(home),
            **env}
    return subprocess.run([sys.executable, "-m", "proofmarket.cli.main", *args], capture_output=True, text=True,
                          env=full, timeout=600)


@pytest.mark.slow
def test_dry_run_predicts_in_seconds_and_an_over_budget_compile_stops_before_setup(tmp_path: Path) -> None:
    model, samples = str(sample_path("mlp")), str(sample_path("mlp", "samples"))
    started = time.monotonic()
    done = _cli(tmp_path, "compile", model, "--sample", samples, "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["within_budget"] is True and 8 <= doc["prediction"]["logrows"] <= 16
    assert time.monotonic() - started < 60  # seconds, not a compile: no tuning, no keys
    assert not (tmp_path / "models.json").exists()  # nothing was compiled or stored as a model

    refused = _cli(tmp_path, "compile", model, "--sample", samples, "--json", PROOFMARKET_MAX_LOGROWS="6")
    assert refused.returncode == 2
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "model_over_budget" and "logrows" in error["message"]
    assert "checking the ONNX model" in refused.stderr and "predicted: logrows" in refused.stderr  # steps, on stderr
    assert not (tmp_path / "models.json").exists()


@pytest.mark.slow  # the calibrated prediction compiles its candidates' circuits
def test_a_model_far_over_budget_is_answered_from_its_graph_without_calibrating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 74: a dry run of a model over the node's budget took minutes of calibrations (9-11 for a GPT block);
    now the graph's own rows (EZKL's settings, no calibration) are a lower bound, and over the budget they answer:
    no calibration runs, and the refusal says how many slices would fit."""
    from proofmarket.systems.ezkl import ezkl_calls
    from proofmarket.systems.ezkl.dry_run import predict_model
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    samples = json.loads(sample_path("mlp", "samples").read_text())
    full = predict_model(sample_path("mlp"), samples, PrivacyProfile())[0]  # calibrated: the real prediction

    def never(*_: object, **__: object) -> None:
        raise AssertionError("calibrated a model its graph alone puts over the budget")

    monkeypatch.setattr(ezkl_calls, "calibrate", never)
    tight = Budget(max_logrows=full.logrows - 3, max_prove_s=3600.0, max_memory_mb=10**6)
    floor, _ = predict_model(sample_path("mlp"), samples, PrivacyProfile(), budget=tight)
    assert "lower bound from the graph alone" in floor.sized_by
    assert tight.max_logrows < floor.logrows <= full.logrows  # a bound: never more than the calibrated circuit
    with pytest.raises(ModelOverBudget) as refused:
        tight.check(floor)
    assert refused.value.details["slices"] >= 2
    roomy = Budget(max_logrows=full.logrows + 4, max_prove_s=3600.0, max_memory_mb=10**6)
    with pytest.raises(AssertionError, match="calibrated"):  # within the budget: calibrated as before
        predict_model(sample_path("mlp"), samples, PrivacyProfile(), budget=roomy)
    # within the budget but its graph alone over what a dry run calibrates in seconds: answered from the graph
    from proofmarket.systems.ezkl import dry_run

    monkeypatch.setattr(dry_run, "DRY_RUN_CALIBRATES_UP_TO", floor.logrows - 1)
    quick, _ = predict_model(sample_path("mlp"), samples, PrivacyProfile(), budget=roomy)
    assert "from the graph alone, not calibrated" in quick.sized_by and quick.logrows == floor.logrows


def test_a_torch_default_export_with_npy_samples_is_read_as_compile_reads_it(tmp_path: Path) -> None:
    """torch's default export keeps the weights in model.onnx.data beside model.onnx; .npy samples were read against
    the bare file and refused as if the data file were missing (issue 72)."""
    import numpy as np
    import onnx

    from proofmarket.models import load_model

    model = tmp_path / "model.onnx"
    onnx.save_model(onnx.load(str(sample_path("mlp"))), str(model), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").stat().st_size > 0
    size = load_model(sample_path("mlp")).inputs[0].size
    np.save(tmp_path / "samples.npy", np.random.default_rng(7).uniform(-1, 1, (4, size)).astype(np.float32))
    done = _cli(tmp_path / "home", "compile", str(model), "--sample", str(tmp_path / "samples.npy"), "--dry-run",
                "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["prediction"]["logrows"] >= 8



@pytest.mark.slow  # the prediction calibrates the attention's circuit
def test_a_causal_mask_of_the_floats_lowest_value_is_fitted_to_the_data_not_refused(tmp_path: Path) -> None:
    """Hugging Face's causal mask (``masked_fill`` with ``torch.finfo(float32).min``): EZKL refused the constant
    ("significant bit truncation when instantiating"). Written as a mask, then fitted to the samples' scores
    (``models/masks.py``), the head's circuit is sized by its computation, not by the mask's range (±100 laid it
    out on 2^18 rows)."""
    import numpy as np
    import onnx
    from attention_model import masked_attention

    onnx.save(masked_attention(float(np.finfo(np.float32).min), spread=0.2), str(tmp_path / "attention.onnx"))
    samples = np.random.default_rng(3).uniform(0, 1, size=(4, 6, 8)).astype(np.float32)
    np.save(tmp_path / "samples.npy", samples)
    done = _cli(tmp_path / "home", "compile", str(tmp_path / "attention.onnx"), "--sample",
                str(tmp_path / "samples.npy"), "--dry-run", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    prediction = json.loads(done.stdout)["prediction"]
    assert any(line.startswith("rewritten: attention masks as ±") for line in prediction["domain"]), prediction
    assert prediction["logrows"] <= 16

# --- the tuner times honestly ------------------------------------------------------------------------
def test_the_grid_includes_ezkls_own_defaults() -> None:
    from proofmarket.systems.ezkl.tuning import default_candidates, ezkl_default_candidate

    grid = default_candidates()
    assert grid[-1] == ezkl_default_candidate() and grid[-1].label == "ezkl-default"


def test_candidates_close_in_work_are_all_timed_not_estimated() -> None:
    from proofmarket.systems.ezkl.tuning import Candidate, cost_rank, to_time

    one_col_16 = Candidate(256, 2, 7, 1, logrows=16)  # 2^16 x 1
    four_col_14 = Candidate(256, 2, 7, 4, logrows=14)  # 2^14 x 4: the same estimated work
    two_col_15 = Candidate(256, 3, 7, 2, logrows=15)
    far = Candidate(256, 2, 10, 4, logrows=18)
    accurate = sorted([far, two_col_15, four_col_14, one_col_16], key=cost_rank)
    same_shape = Candidate(128, 3, 7, 1, logrows=16)  # another decomposition, the same circuit shape
    accurate = sorted([*accurate, same_shape], key=cost_rank)
    picked = to_time(accurate, timed=1)
    shapes = {(c.logrows, c.num_inner_cols) for c in picked}
    assert shapes == {(16, 1), (14, 4), (15, 2)} and len(picked) == 3  # one per shape, all close in work
    assert far not in picked


def test_a_candidate_that_cannot_calibrate_falls_back_to_the_next(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """EZKL's 1l_instance_norm cannot calibrate at the predictor's scale 7: the prediction takes the next
    candidate instead of refusing a model the tuner can compile; only when every candidate fails is it an error."""
    from proofmarket.core.errors import CircuitCompileError
    from proofmarket.systems.ezkl import ezkl_calls, predict

    tried: list[tuple[object, ...]] = []
    works = {predict.FALLBACK_CANDIDATES[0][2]}

    def gen_settings(model: Path, settings: Path, ra: object) -> None:
        Path(settings).write_text(json.dumps({"run_args": {"logrows": 0, "num_inner_cols": 2}}))

    def calibrate(data: Path, model: Path, settings: Path, *, scales: list[int], **_: object) -> None:
        tried.append(tuple(scales))
        if scales[0] not in works:
            raise CircuitCompileError("calibrating circuit settings failed: calibration failed")
        Path(settings).write_text(json.dumps(_settings(11, 2)))

    monkeypatch.setattr(ezkl_calls, "gen_settings", gen_settings)
    monkeypatch.setattr(ezkl_calls, "calibrate", calibrate)
    assert predict.predict(tmp_path / "m.onnx", [[[0.5]]]).logrows == 11
    assert tried == [(predict.PREDICT_CANDIDATE[2],), (predict.FALLBACK_CANDIDATES[0][2],)]
    works.clear()
    with pytest.raises(CircuitCompileError):
        predict.predict(tmp_path / "m.onnx", [[[0.5]]])


@pytest.mark.slow  # the prediction calibrates the sample MLP
def test_a_proving_key_predicted_over_the_store_limit_is_refused_before_any_key_setup(tmp_path: Path) -> None:
    """Issue 74's LeNet-5 compiled for 28 minutes, then its 6.8 GB proving key was refused by the store (2 GiB a
    file): the predicted key is now checked against the store's limit right after the prediction."""
    from proofmarket.store import LocalStore
    from proofmarket.systems.ezkl.compiler import CompileOptions, compile_model
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.ezkl.srs import SrsProvider

    samples = json.loads(sample_path("mlp", "samples").read_text())
    store = LocalStore(tmp_path / "store", max_size=10_000)  # smaller than any proving key
    said: list[str] = []
    with pytest.raises(ModelOverBudget, match="over the artifact store's limit of 10,000 bytes") as refused:
        compile_model(sample_path("mlp"), samples, store,
                      CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(tmp_path / "srs")), said.append)
    assert refused.value.details["slices"] >= 2
    assert not any(line.startswith("timing ") for line in said)  # no key setup, no proof
    assert not (tmp_path / "srs").exists() or not any((tmp_path / "srs").iterdir())
