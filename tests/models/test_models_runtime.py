"""run_onnx: agreement with a numpy forward pass and translation of onnxruntime errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from model_builders import mlp_model, mlp_weights
from onnx import numpy_helper

from proofmarket.core.errors import InputShapeError, InvalidModel
from proofmarket.models import load_model, parse_inputs, run_onnx
from proofmarket.samples import sample_path


def _numpy_mlp(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.maximum(x @ w["W1"].T + w["B1"], 0)
    return h @ w["W2"].T + w["B2"]


def test_matches_numpy_forward_pass(mlp_path: Path) -> None:
    info = load_model(mlp_path)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.standard_normal(8).tolist()
        arrays = parse_inputs({"input_data": [x]}, info)
        (out,) = run_onnx(mlp_path, arrays)
        assert out.shape == (1, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, _numpy_mlp(mlp_weights(), arrays[0]), rtol=1e-5, atol=1e-5)


def test_sample_mlp_matches_numpy_with_its_own_weights() -> None:
    path = sample_path("mlp")
    proto = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    w = {"W1": init["fc1.weight"], "B1": init["fc1.bias"], "W2": init["fc2.weight"], "B2": init["fc2.bias"]}
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(1, 8)
    np.testing.assert_allclose(run_onnx(path, [x])[0], _numpy_mlp(w, x), rtol=1e-5, atol=1e-5)


def test_symbolic_batch_model_runs_with_batch_one(save) -> None:
    path = save(mlp_model(batch="N"), "b.onnx")
    x = np.ones((1, 8), np.float32)
    np.testing.assert_allclose(run_onnx(path, [x])[0], _numpy_mlp(mlp_weights(), x), rtol=1e-5)


def test_wrong_inputs_are_input_errors(mlp_path: Path) -> None:
    with pytest.raises(InputShapeError, match="takes 1 input"):
        run_onnx(mlp_path, [])
    with pytest.raises(InputShapeError, match="onnxruntime refused the inputs"):
        run_onnx(mlp_path, [np.ones((1, 7), np.float32)])


def test_unloadable_model_is_invalid(save, tmp_path: Path) -> None:
    with pytest.raises(InvalidModel, match="onnxruntime cannot load the model"):
        run_onnx(save(b"garbage", "g.onnx"), [np.ones((1, 8), np.float32)])
    with pytest.raises(InvalidModel, match="no model file"):
        run_onnx(tmp_path / "missing.onnx", [])


def test_session_cache_follows_file_changes(save) -> None:
    path = save(mlp_model(seed=0), "m.onnx")
    x = np.ones((1, 8), np.float32)
    first = run_onnx(path, [x])[0]
    save(mlp_model(seed=1), "m.onnx")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = run_onnx(path, [x])[0]
    np.testing.assert_allclose(second, _numpy_mlp(mlp_weights(1), x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(first, second)
