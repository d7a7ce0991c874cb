"""Tiny ONNX model builders (onnx.helper) shared by the proofmarket.models tests.

A plain module with a distinct name rather than conftest, so imports do not depend on which
conftest.py pytest loaded first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Dims = Sequence[int | str | None]


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, Dims]],
    outputs: list[tuple[str, Dims]],
    inits: dict[str, np.ndarray] | None = None,
    *,
    opset: int = 13,
    ir_version: int = 8,
    in_type: int = TensorProto.FLOAT,
    out_type: int = TensorProto.FLOAT,
    check: bool = True,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, in_type, list(s) if s is not None else None) for n, s in inputs],
        [helper.make_tensor_value_info(n, out_type, list(s) if s is not None else None) for n, s in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    if check:
        onnx.checker.check_model(model)
    return model


def mlp_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((16, 8)).astype(np.float32),
        "B1": rng.standard_normal(16).astype(np.float32),
        "W2": rng.standard_normal((3, 16)).astype(np.float32),
        "B2": rng.standard_normal(3).astype(np.float32),
    }


def mlp_model(batch: int | str | None = 1, seed: int = 0) -> onnx.ModelProto:
    """Gemm-Relu-Gemm 8-16-3 with input 'x' [batch, 8] and output 'logits' [batch, 3]."""
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["logits"], name="fc2", transB=1),
    ]
    return make_model(nodes, [("x", [batch, 8])], [("logits", [batch, 3])], mlp_weights(seed))
