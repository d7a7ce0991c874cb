"""An attention mask's value fitted to the data at compile (``models/masks.py``): the smallest that keeps every
masked score 20 under its row's real ones, checked against numpy's masked softmax; ±100 kept where it must be."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from attention_model import attention_scores, masked_attention, masked_attention_reference
from onnx import helper, numpy_helper

from proofmarket.models import normalize_model, run_onnx
from proofmarket.models.masks import fit_masks
from proofmarket.models.rewrites import INFINITY_AS, MASKS_KEY


def _normalized(tmp_path: Path, model: onnx.ModelProto) -> Path:
    onnx.save(model, str(tmp_path / "raw.onnx"))
    normalize_model(tmp_path / "raw.onnx", tmp_path / "normalized.onnx")
    return tmp_path / "normalized.onnx"


def _points(scale: float = 1.0) -> list[list[np.ndarray]]:
    return [[(np.random.default_rng(seed).normal(size=(1, 6, 8)) * scale).astype(np.float32)] for seed in range(5)]


def _mask_values(path: Path) -> set[float]:
    model = onnx.load(str(path))
    assert all(p.key != MASKS_KEY for p in model.metadata_props)  # fitted once: a slice cut from it is not refitted
    return {float(v) for i in model.graph.initializer if i.name in ("fill", "bias")
            for v in np.unique(numpy_helper.to_array(i)) if v != 0}


@pytest.mark.parametrize("added", [False, True], ids=["masked_fill", "added"])
@pytest.mark.parametrize("spread", [0.1, 0.5])
def test_a_mask_is_fitted_to_twice_the_largest_score_plus_20_and_computes_the_masked_softmax(
        tmp_path: Path, added: bool, spread: float) -> None:
    model = masked_attention(float("-inf"), added=added, spread=spread)
    path = _normalized(tmp_path, model)
    points = _points()
    note = fit_masks(path, points)
    largest = max(float(np.abs(attention_scores(model, p[0])).max()) for p in points)  # numpy's, not the model's
    want = math.ceil(2 * largest + 20)
    assert want < INFINITY_AS and note is not None and f"±{want}," in note, (note, largest)
    assert _mask_values(path) == {-float(want)}
    for seed in (7, 8):  # inputs it was not fitted on, inside the points' reach
        x = (np.random.default_rng(seed).normal(size=(1, 6, 8)) * 0.8).astype(np.float32)
        np.testing.assert_allclose(run_onnx(path, [x])[0], masked_attention_reference(model, x), atol=1e-6)


def test_scores_too_large_for_a_smaller_mask_keep_100(tmp_path: Path) -> None:
    model = masked_attention(float("-inf"))
    path = _normalized(tmp_path, model)
    assert fit_masks(path, _points(scale=4.0)) is None  # scores past 40: 2 x them + 20 is not under 100
    assert _mask_values(path) == {-INFINITY_AS}


def test_a_mask_met_by_another_operator_keeps_100(tmp_path: Path) -> None:
    keep = np.tril(np.ones((4, 4), dtype=np.float32))
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Mul", ["x", "fill"], ["scaled"]), helper.make_node("Softmax", ["scaled"], ["y"], axis=-1)],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 4])],
        [numpy_helper.from_array(np.where(keep > 0, 1.0, -np.inf).astype(np.float32), "fill")]),
        opset_imports=[helper.make_opsetid("", 13)])
    path = _normalized(tmp_path, model)
    assert fit_masks(path, [[np.full((1, 4, 4), 0.5, np.float32)]]) is None
    assert _mask_values(path) == {1.0, -INFINITY_AS}


def test_a_model_without_masks_is_left_as_it_is(tmp_path: Path) -> None:
    model = masked_attention(-5.0)  # a finite fill: a model's own number, not a mask
    path = _normalized(tmp_path, model)
    before = path.read_bytes()
    assert fit_masks(path, _points()) is None and path.read_bytes() == before


def test_an_uploaded_models_own_masks_entry_names_nothing(tmp_path: Path) -> None:
    """Only what the check wrote is a mask: a model arriving with the metadata entry (naming its weights) keeps them."""
    model = masked_attention(-5.0)
    helper.set_model_props(model, {MASKS_KEY: "wq,wk"})
    path = _normalized(tmp_path, model)
    assert all(p.key != MASKS_KEY for p in onnx.load(str(path)).metadata_props)
    assert fit_masks(path, _points()) is None
