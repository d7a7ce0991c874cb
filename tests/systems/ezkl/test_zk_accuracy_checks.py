"""The accuracy checks of the settings search say what failed (the fifth wave: one near-tie sample made every tuned
candidate "inaccurate" with nothing said, and compile fell back to EZKL's defaults at 12x the predicted cost).
A test double of the witness stands in for EZKL: the checks themselves are what runs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from proofmarket.systems.ezkl import tuning
from proofmarket.systems.ezkl.candidates import AccuracyBound, Candidate
from proofmarket.systems.ezkl.compiler import task_of

LIMIT = 0.01


def measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: list[list[float]],
             got: list[list[float]], classifier: bool = True) -> Candidate:
    outputs = iter(got)
    monkeypatch.setattr(tuning.ezkl_calls, "gen_witness", lambda *a: {"outputs": []})
    monkeypatch.setattr(tuning, "decode_outputs", lambda felts, scales, shapes: [np.array([next(outputs)])])
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model_output_scales": [7]}))
    cand = Candidate(256, 3, 7, 1, settings_path=settings, compiled_path=tmp_path / "model.compiled")
    job: Any = SimpleNamespace(samples=[[[0.0]]] * len(reference), workdir=tmp_path,
                               reference=[[np.array([r])] for r in reference],
                               bound=AccuracyBound(classifier=classifier), domain_points=[])
    tuning._measure_accuracy(job, cand, LIMIT)
    return cand


def test_a_near_tie_sample_is_noted_not_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cand = measured(tmp_path, monkeypatch, [[0.5, 0.5011, 0.1], [1.0, 0.0, 0.0]],
                    [[0.5011, 0.5, 0.1], [1.0, 0.0, 0.0]])
    assert cand.status == "ok" and cand.near_ties == [0] and cand.failure is None


def test_a_failed_check_names_its_sample_and_by_how_much(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flipped = measured(tmp_path, monkeypatch, [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]],
                       [[1.0, 0.0, 0.0], [0.1, 0.9, 0.0]])
    assert flipped.status == "inaccurate"
    assert flipped.failure is not None and flipped.failure.startswith("sample 1:")
    far = measured(tmp_path, monkeypatch, [[0.2], [0.4]], [[0.2], [0.45]], classifier=False)
    assert far.status == "inaccurate" and far.failure == "sample 1: error 0.05 over the bound 0.01"
    message = tuning.not_met([flipped], LIMIT, classifier=True)
    assert "sample 1" in message and "--task regression" in message and "--max-error" in message


def test_the_task_is_the_owners_word_else_evidence_only() -> None:
    logits = SimpleNamespace(is_classifier=False, classifier_evidence="")  # [1, N], no Softmax: no evidence
    softmax = SimpleNamespace(is_classifier=True, classifier_evidence="its output 'y' comes from a Softmax")
    assert task_of(None, logits)[0] is False and "state --task classification" in task_of(None, logits)[1]
    assert task_of(None, softmax)[0] is True and "inferred: its output 'y' comes from a Softmax" in task_of(
        None, softmax)[1]
    assert task_of("classification", logits) == (True, "task: classification (stated)")
    assert task_of("regression", softmax)[0] is False


@pytest.mark.slow  # the dry run compiles the circuit to predict its cost
def test_the_dry_run_warns_of_a_sample_near_a_class_boundary(tmp_path: Path) -> None:
    """A real dry run (EZKL calibrates the likely pick) on a softmax classifier: the sample whose top two classes
    differ by 0.001 is named in the prediction and printed as a warning before any compile."""
    from onnx import TensorProto, helper, numpy_helper

    from proofmarket.cli.compile_views import print_prediction
    from proofmarket.cli.output import out
    from proofmarket.core.settings import Settings
    from proofmarket.systems.ezkl.dry_run import predict_model
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    weights = numpy_helper.from_array(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["z"], transB=1), helper.make_node("Softmax", ["z"], ["y"], axis=-1)],
        "tie", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializer=[weights])
    path = tmp_path / "tie.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    samples = {"inputs": [{"x": [[2.0, -1.0]]}, {"x": [[0.5, 0.501]]}, {"x": [[-1.0, 2.0]]}]}
    prediction, _ = predict_model(path, samples, PrivacyProfile(), task="classification")
    assert prediction.near_ties == (1,)
    with out.capture() as captured:
        print_prediction(prediction, Settings(home=tmp_path / "home", _env_file=None), as_json=False)  # type: ignore[call-arg]
    assert "warning: sample(s) 1 sit within quantisation noise of a class boundary" in captured.get()


def test_a_single_score_near_its_threshold_is_a_near_tie(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A binary classifier with one sigmoid output: a sample whose probability sits within quantisation noise of
    0.5 is named as a near tie (its class may differ in the circuit), one far from it is not."""
    cand = measured(tmp_path, monkeypatch, [[0.505], [0.9]], [[0.497], [0.9]])
    assert cand.status == "ok" and cand.near_ties == [0]


def _missed(scale: int, error: float) -> Candidate:
    return Candidate(1024, 2, scale, 1, status="inaccurate", max_abs_error=error,
                     failure=f"sample 0: error {error:.4g} over the bound {LIMIT}")


def test_an_error_still_shrinking_at_the_finest_scale_is_said_with_its_numbers() -> None:
    """Hugging Face's GPT-2 before its LayerNorms were scaled: 0.086 at 11, 0.031 at 12, against 0.0069."""
    shrinking = [_missed(7, 0.058), _missed(11, 0.086), _missed(12, 0.031)]
    message = tuning.not_met(shrinking, LIMIT, classifier=False)
    assert "still shrinks at the finest scale searched (0.086 at 11, 0.031 at 12)" in message, message
    assert "closest (b1024x2-s12-c1)" in message
    flat = [_missed(10, 0.05), _missed(11, 0.05), _missed(12, 0.05)]  # the scale does not set it: nothing said
    assert "still shrinks" not in tuning.not_met(flat, LIMIT, classifier=False)
    assert "still shrinks" not in tuning.not_met([_missed(7, 0.2), _missed(10, 0.1)], LIMIT, classifier=False)


def test_nothing_accurate_is_sized_by_the_closest_candidate_calibrated_not_a_fresh_calibration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face's GPT-2 before its LayerNorms were scaled: no candidate met the bound, and a fresh calibration of
    the prediction's own candidate failed, so the compile ended in "calibration failed" instead of the search's
    accuracy_not_met naming the closest candidate. The candidates already calibrated size the prediction now."""
    from proofmarket.systems.ezkl import compiler
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    def calibrated(label_scale: int, error: float, logrows: int) -> Candidate:
        settings = tmp_path / f"settings-{label_scale}.json"
        settings.write_text(json.dumps({"run_args": {"logrows": logrows, "num_inner_cols": 1}, "num_rows": 1000}))
        return Candidate(1024, 2, label_scale, 1, status="inaccurate", max_abs_error=error, logrows=logrows,
                         settings_path=settings)

    tried = [calibrated(11, 0.086, 19), calibrated(12, 0.031, 18), calibrated(10, 0.2, 20)]

    def nothing_accurate(job: Any, **_: Any) -> None:
        job.known.update({c.label: c for c in tried})
        return None

    def fresh(*_: Any, **__: Any) -> Any:
        raise AssertionError("a fresh calibration was made")

    monkeypatch.setattr(compiler, "likely_pick", nothing_accurate)
    monkeypatch.setattr(compiler, "predict", fresh)
    known: dict[str, Candidate] = {}
    prediction, _ = compiler._predicted(tmp_path / "m.onnx", [[[0.0]]], [[np.array([0.0])]], PrivacyProfile(),
                                        tmp_path, AccuracyBound(), known)
    assert prediction.logrows == 18  # the closest (0.031 off at scale 12), not the largest (20)
