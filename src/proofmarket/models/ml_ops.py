"""Rewrite the few ``ai.onnx.ml`` nodes that have an exact standard-ONNX form, before the operator check.

scikit-learn models exported by skl2onnx carry ``ai.onnx.ml`` operators, which have no circuit form.
Two are plain tensor arithmetic and are rewritten exactly:

- ``ArrayFeatureExtractor(classes, index)`` with constant 1-D ``classes`` (the class labels an
  MLPClassifier's argmax picks): ``Gather(classes, index, axis=0)``;
- ``LinearRegressor(X)`` with ``post_transform`` NONE: ``Gemm(X, coefficients, intercepts, transB=1)``.

Every other ``ai.onnx.ml`` node is left as is (and refused by the operator check, with its name).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

ML_DOMAIN = "ai.onnx.ml"


def rewrite_ml_ops(model: onnx.ModelProto) -> bool:
    """Rewrite in place; True when something changed."""
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    changed = False
    for index, node in enumerate(list(graph.node)):
        if node.domain != ML_DOMAIN:
            continue
        replacement = None
        if node.op_type == "ArrayFeatureExtractor" and node.input[0] in constants \
                and len(constants[node.input[0]].dims) == 1:
            replacement = [helper.make_node("Gather", [node.input[0], node.input[1]], list(node.output),
                                            name=node.name or f"afe_{index}", axis=0)]
        elif node.op_type == "LinearRegressor":
            replacement = _linear_regressor(node, index, graph)
        if replacement is not None:
            graph.node.remove(node)
            for offset, new in enumerate(replacement):
                graph.node.insert(index + offset, new)
            changed = True
    if changed and not any(n.domain == ML_DOMAIN for n in graph.node):
        keep = [o for o in model.opset_import if o.domain != ML_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(keep)
    return changed


def _linear_regressor(node: onnx.NodeProto, index: int, graph: onnx.GraphProto) -> list[onnx.NodeProto] | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("post_transform", b"NONE") not in (b"NONE", "NONE"):
        return None
    targets = int(attrs.get("targets", 1))
    coefficients = np.asarray(attrs.get("coefficients", []), dtype=np.float32)
    if targets < 1 or coefficients.size % targets:
        return None
    weights = coefficients.reshape(targets, -1)
    intercepts = np.asarray(attrs.get("intercepts", [0.0] * targets), dtype=np.float32).reshape(targets)
    base = node.name or f"linreg_{index}"
    graph.initializer.extend([numpy_helper.from_array(weights, f"{base}_W"),
                              numpy_helper.from_array(intercepts, f"{base}_B")])
    return [helper.make_node("Gemm", [node.input[0], f"{base}_W", f"{base}_B"], list(node.output), name=base,
                             transB=1)]
