"""Lower the ``ai.onnx.ml`` operators scikit-learn models carry into standard ONNX tensor operations.

skl2onnx writes scikit-learn estimators as ``ai.onnx.ml`` operators, which no circuit can prove as they are; each
common one is a few tensor operations, written in their place before the operator check (in the sandboxed check,
before tuning), so the circuit proves what onnxruntime computes:

- ``Scaler``: ``(X - offset) * scale``; ``Normalizer`` (L1, L2, MAX): ``X`` divided by its row norm;
  ``Binarizer``: 1 where ``X`` is over the threshold;
- ``LinearRegressor``, ``LinearClassifier`` (logistic regression, linear SVMs, ridge classifiers) and linear-kernel
  ``SVMRegressor``: a matrix product and a bias, the post-transform (logistic, softmax), the label as the argmax;
  a linear-kernel ``SVMClassifier`` (``SVC(kernel="linear")``): every one-vs-one pair's score in one matrix product,
  the pairs' votes, the label as their argmax;
- ``TreeEnsembleClassifier``/``Regressor`` (decision trees, random forests, gradient boosting) in matrix form
  (``ml_trees``), within the limits stated there;
- ``ArrayFeatureExtractor``: a ``Gather`` on the last axis; ``ZipMap`` (a sequence of maps, no tensor): removed, its
  output is the probabilities tensor itself, in the order of the class labels;
- ``Imputer`` that fills NaN (scikit-learn's ``SimpleImputer`` default): the identity, since an input holding NaN
  is refused before it reaches a model (``models.inputs``); ``FeatureVectorizer``: a ``Concat`` of its inputs.

Each rewrite says what it did in one line (the ``notes`` the compile report prints). An ``ai.onnx.ml`` node that has
no exact tensor form here (kernel SVMs, string encoders, an imputer of a finite value) is left as is and refused by
the operator check.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx
from onnx import TensorProto, numpy_helper

from proofmarket.core.errors import UnsupportedOperator
from proofmarket.models.ml_build import Lowering, attributes
from proofmarket.models.ml_linear import (
    binarizer,
    linear_classifier,
    linear_regressor,
    normalizer,
    scaler,
    svm_classifier,
    svm_regressor,
)
from proofmarket.models.ml_trees import tree_ensemble

ML_DOMAIN = "ai.onnx.ml"

_Rewrite = Callable[[Lowering, onnx.NodeProto], "str | None"]

_REWRITES: dict[str, _Rewrite] = {
    "Scaler": scaler,
    "Normalizer": normalizer,
    "Binarizer": binarizer,
    "LinearRegressor": linear_regressor,
    "LinearClassifier": linear_classifier,
    "SVMRegressor": svm_regressor,
    "SVMClassifier": svm_classifier,
    "TreeEnsembleClassifier": tree_ensemble,
    "TreeEnsembleRegressor": tree_ensemble,
}


def rewrite_ml_ops(model: onnx.ModelProto) -> list[str]:
    """Rewrite in place; returns one note per rewritten node kind (empty when nothing changed)."""
    graph = model.graph
    if not any(n.domain == ML_DOMAIN for n in graph.node):
        return []
    notes: list[str] = []
    rebuilt: list[onnx.NodeProto] = []
    opset = max((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    low = Lowering(graph, rebuilt, opset)
    for index, node in enumerate(list(graph.node)):
        low.base = node.name or f"{node.op_type.lower()}_{index}"
        note = _rewrite(low, node) if node.domain == ML_DOMAIN else None
        if note is None:
            rebuilt.append(node)
        elif note not in notes:
            notes.append(note)
    del graph.node[:]
    graph.node.extend(rebuilt)
    low.retype_outputs()
    if not any(n.domain == ML_DOMAIN for n in graph.node):
        keep = [o for o in model.opset_import if o.domain != ML_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(keep)
    return notes


def _rewrite(low: Lowering, node: onnx.NodeProto) -> str | None:
    if node.op_type == "ZipMap":
        return _zipmap(low, node)
    if node.op_type == "ArrayFeatureExtractor":
        return _feature_extractor(low, node)
    if node.op_type == "Imputer":
        return _imputer(node, low)
    if node.op_type == "FeatureVectorizer":
        low.node("Concat", list(node.input), list(node.output), axis=1)
        return "FeatureVectorizer as a Concat of its inputs"
    rewrite = _REWRITES.get(node.op_type)
    return rewrite(low, node) if rewrite is not None else None


def _feature_extractor(low: Lowering, node: onnx.NodeProto) -> str:
    """``ArrayFeatureExtractor(X, indices)``: the elements of ``X``'s last axis at ``indices``; the last axis stays
    (one scalar index gives ``[..., 1]``, as onnxruntime answers, where a ``Gather`` would drop it)."""
    indices = node.input[1]
    constant = next((t for t in low.graph.initializer if t.name == indices), None)
    if constant is not None and len(constant.dims) == 0:
        indices = low.const("indices", numpy_helper.to_array(constant).reshape(1))
    low.node("Gather", [node.input[0], indices], list(node.output), axis=-1)
    return "ArrayFeatureExtractor as a Gather on the last axis"


def _imputer(node: onnx.NodeProto, low: Lowering) -> str:
    """An Imputer replacing NaN: no input a node accepts holds NaN (``models.inputs`` refuses it), so it is the
    identity; one replacing a finite value would need an equality test, which no circuit here proves exactly."""
    attrs = attributes(node)
    replaced = attrs.get("replaced_value_float", 0.0)
    if "replaced_value_int64" in attrs or not math.isnan(float(replaced)):
        shown = attrs.get("replaced_value_int64", replaced)
        raise UnsupportedOperator(
            f"The model's Imputer replaces the value {shown}, which needs an equality test no circuit here proves "
            "exactly: impute before the model, or mark missing values as NaN (SimpleImputer(missing_values=np.nan), "
            "the default).", operators=["ai.onnx.ml.Imputer"])
    low.node("Identity", [node.input[0]], list(node.output))
    return "Imputer (of NaN) as the identity: an input holding NaN is refused before it reaches the model"


def _zipmap(low: Lowering, node: onnx.NodeProto) -> str:
    """A ZipMap turns the probabilities into a sequence of {label: probability} maps: the output is served as the
    probabilities tensor itself (one row, the classes in the order of the labels)."""
    attrs = attributes(node)
    labels = attrs.get("classlabels_int64s") or [s.decode() if isinstance(s, bytes) else s
                                                 for s in attrs.get("classlabels_strings", [])]
    low.node("Identity", [node.input[0]], list(node.output))
    low.retype(node.output[0], TensorProto.FLOAT)
    shown = ", ".join(str(label) for label in list(labels)[:8]) + (", ..." if len(labels) > 8 else "")
    return (f"ZipMap: output '{node.output[0]}' is served as a [1, {len(labels)}] tensor of probabilities, one per "
            f"class in the order [{shown}] (skl2onnx option zipmap=False gives the same)")

