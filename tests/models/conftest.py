"""Fixtures for the proofmarket.models tests: tiny ONNX models written under tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from model_builders import make_model, mlp_model
from onnx import helper


@pytest.fixture
def save(tmp_path: Path) -> Callable[[onnx.ModelProto | bytes, str], Path]:
    """Write a model (or raw bytes) under tmp_path and return the path."""

    def _save(model: onnx.ModelProto | bytes, name: str = "model.onnx") -> Path:
        path = tmp_path / name
        data = model if isinstance(model, bytes) else model.SerializeToString()
        path.write_bytes(data)
        return path

    return _save


@pytest.fixture
def mlp_path(save: Callable[[onnx.ModelProto, str], Path]) -> Path:
    return save(mlp_model(), "mlp.onnx")


@pytest.fixture
def cnn_path(save: Callable[[onnx.ModelProto, str], Path]) -> Path:
    """Conv (no explicit strides) - Relu - MaxPool (no strides) - Flatten - Gemm, input [1, 1, 6, 6]."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["img", "CW", "CB"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "FW", "FB"], ["y"], name="fc", transB=1),
    ]
    inits = {
        "CW": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
        "CB": rng.standard_normal(2).astype(np.float32),
        "FW": rng.standard_normal((4, 18)).astype(np.float32),
        "FB": rng.standard_normal(4).astype(np.float32),
    }
    return save(make_model(nodes, [("img", [1, 1, 6, 6])], [("y", [1, 4])], inits), "cnn.onnx")


@pytest.fixture
def two_input_path(save: Callable[[onnx.ModelProto, str], Path]) -> Path:
    """y = a @ W + b2 with inputs 'a' [1, 2, 3] and 'b' [1, 4]; W is an initializer listed as input."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Flatten", ["a"], ["af"], name="flat"),
        helper.make_node("MatMul", ["af", "W"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["y"], name="add"),
    ]
    model = make_model(
        nodes,
        [("a", [1, 2, 3]), ("b", [1, 4]), ("W", [6, 4])],
        [("y", [1, 4])],
        {"W": rng.standard_normal((6, 4)).astype(np.float32)},
    )
    return save(model, "two.onnx")
