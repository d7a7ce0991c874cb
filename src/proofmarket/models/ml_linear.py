"""Scalers, normalizers and linear models of ``ai.onnx.ml`` as standard ONNX (``ml_ops`` dispatches here).

Each function writes the replacement of one node with the ``Lowering`` it is given and returns a one-line note,
or None to leave the node as it is (the operator check then refuses it by name). The arithmetic is onnxruntime's:
the tests compare each lowered model with onnxruntime on the original.
"""

from __future__ import annotations

import numpy as np
import onnx

from proofmarket.core.errors import UnsupportedOperator
from proofmarket.models.ml_build import Lowering, attributes, class_labels, string_label_note


def scaler(low: Lowering, node: onnx.NodeProto) -> str:
    attrs = attributes(node)
    offset = np.asarray(attrs.get("offset", [0.0]), dtype=np.float32)
    scale = np.asarray(attrs.get("scale", [1.0]), dtype=np.float32)
    shifted = low.node("Sub", [node.input[0], low.const("offset", offset.reshape(1, -1))])
    low.node("Mul", [shifted, low.const("scale", scale.reshape(1, -1))], list(node.output))
    return "Scaler as (X - offset) * scale"


def normalizer(low: Lowering, node: onnx.NodeProto) -> str:
    """Each row divided by its norm: L1 (sum of absolute values), L2 (Euclidean) or MAX (the row's largest value,
    as onnxruntime takes it)."""
    norm = str(attributes(node).get("norm", "MAX"))
    x = node.input[0]
    if norm == "MAX":
        total = low.reduce("ReduceMax", x)
    elif norm in ("L1", "L2"):
        total = low.reduce("ReduceSum", low.node("Abs", [x]) if norm == "L1" else low.node("Mul", [x, x]))
        if norm == "L2":
            total = low.node("Sqrt", [total])
    else:
        raise UnsupportedOperator(f"The model's Normalizer uses norm {norm!r} (L1, L2 and MAX are lowered).",
                                  operators=["ai.onnx.ml.Normalizer"], norm=norm)
    low.node("Div", [x, total], list(node.output))
    return f"Normalizer ({norm}) as a division by the row's norm"


def binarizer(low: Lowering, node: onnx.NodeProto) -> str:
    threshold = float(attributes(node).get("threshold", 0.0))
    over = low.node("Greater", [node.input[0], low.const("threshold", np.asarray(threshold, dtype=np.float32))])
    low.node("Where", [over, low.const("one", np.asarray(1.0, dtype=np.float32)),
                       low.const("zero", np.asarray(0.0, dtype=np.float32))], list(node.output))
    return "Binarizer as a comparison with the threshold"


def linear_regressor(low: Lowering, node: onnx.NodeProto) -> str:
    attrs = attributes(node)
    targets = int(attrs.get("targets", 1))
    coefficients = np.asarray(attrs.get("coefficients", []), dtype=np.float32)
    if targets < 1 or coefficients.size == 0 or coefficients.size % targets:
        raise UnsupportedOperator("The model's LinearRegressor has coefficients that do not fit its targets.",
                                  operators=["ai.onnx.ml.LinearRegressor"])
    intercepts = np.asarray(attrs.get("intercepts", [0.0] * targets), dtype=np.float32).reshape(targets)
    scores = low.matmul_bias(node.input[0], coefficients.reshape(targets, -1), intercepts)
    _finish(low, scores, str(attrs.get("post_transform", "NONE")), node.output[0], "LinearRegressor")
    return "LinearRegressor as a matrix product and a bias"


def linear_classifier(low: Lowering, node: onnx.NodeProto) -> str:
    """Scores ``X W^T + b`` (one row of coefficients per class; one row for two classes scores the second class,
    the first is its negation), the post-transform on them, the label as their argmax."""
    attrs = attributes(node)
    labels = class_labels(attrs)
    coefficients = np.asarray(attrs.get("coefficients", []), dtype=np.float32)
    intercepts = np.asarray(attrs.get("intercepts", []), dtype=np.float32)
    rows = max(len(intercepts), 1)
    if coefficients.size == 0 or coefficients.size % rows:
        raise UnsupportedOperator("The model's LinearClassifier has coefficients that do not fit its classes.",
                                  operators=["ai.onnx.ml.LinearClassifier"])
    weights = coefficients.reshape(rows, -1)
    bias = intercepts if len(intercepts) else np.zeros(rows, dtype=np.float32)
    if rows == 1 and len(labels) == 2:
        weights, bias = np.concatenate([-weights, weights]), np.concatenate([-bias, bias])
    scores = low.matmul_bias(node.input[0], weights, bias)
    scores = low.post_transform(scores, str(attrs.get("post_transform", "NONE")), "LinearClassifier")
    low.node("Identity", [scores], [node.output[1]])
    low.label(scores, node.output[0], labels)
    return "LinearClassifier as a matrix product, its post-transform and an argmax" + \
        string_label_note(labels, node.output[0])


def svm_regressor(low: Lowering, node: onnx.NodeProto) -> str:
    """A linear-kernel SVM regressor is a linear model: the weights are the support vectors weighted by their
    coefficients (or the coefficients themselves when there are no support vectors)."""
    attrs = attributes(node)
    kernel = str(attrs.get("kernel_type", "LINEAR"))
    if kernel != "LINEAR" or int(attrs.get("one_class", 0)):
        raise UnsupportedOperator(
            f"The model's SVMRegressor uses a {kernel.lower()} kernel{' (one-class)' if attrs.get('one_class') else ''}"
            ", which is not lowered: only linear SVMs are (export LinearSVR, or an SVR with kernel='linear').",
            operators=["ai.onnx.ml.SVMRegressor"], kernel=kernel)
    coefficients = np.asarray(attrs.get("coefficients", []), dtype=np.float32)
    vectors = np.asarray(attrs.get("support_vectors", []), dtype=np.float32)
    supports = int(attrs.get("n_supports", 0))
    weights = coefficients.reshape(1, -1) if supports == 0 else \
        (coefficients.reshape(1, supports) @ vectors.reshape(supports, -1))
    rho = np.asarray(attrs.get("rho", [0.0]), dtype=np.float32).reshape(-1)[:1]
    scores = low.matmul_bias(node.input[0], weights.astype(np.float32), rho)
    _finish(low, scores, str(attrs.get("post_transform", "NONE")), node.output[0], "SVMRegressor")
    return "linear SVMRegressor as a matrix product and a bias"


def svm_classifier(low: Lowering, node: onnx.NodeProto) -> str:
    """A linear-kernel SVC (one-vs-one): each pair (i, j) of classes scores ``X (SV^T M) + rho`` (its support vectors
    weighted by their coefficients: linear in X, so one matrix product for every pair), a pair's positive score is a
    vote for i, else for j, and the label is the class with most votes (the first on a tie), as onnxruntime counts
    them. The scores output is the pairs' scores (two classes: ``[-score, score]``). Other kernels and Platt
    probabilities (``probability=True``) are refused."""
    attrs = attributes(node)
    kernel = str(attrs.get("kernel_type", "LINEAR"))
    labels = class_labels(attrs)
    per_class = [int(v) for v in attrs.get("vectors_per_class", [])]
    vectors = np.asarray(attrs.get("support_vectors", []), dtype=np.float64)
    coefficients = np.asarray(attrs.get("coefficients", []), dtype=np.float64)
    why = ("an RBF, polynomial or sigmoid kernel" if kernel != "LINEAR" else
           "Platt probabilities (probability=True)" if attrs.get("prob_a") or attrs.get("prob_b") else
           "no support vectors" if not per_class or not vectors.size else
           f"post_transform {attrs.get('post_transform')}" if str(attrs.get("post_transform", "NONE")) != "NONE"
           else None)
    classes = len(per_class)
    if why is None and (classes != len(labels) or coefficients.size != (classes - 1) * sum(per_class)
                        or vectors.size % sum(per_class)):
        why = "support vectors and coefficients that do not fit its classes"
    if why is not None:
        raise UnsupportedOperator(
            f"The model's SVMClassifier ({kernel.lower()} kernel) has {why}, which is not lowered: export a "
            "LinearSVC (a LinearClassifier), a LogisticRegression, or SVC(kernel='linear') without probability.",
            operators=["ai.onnx.ml.SVMClassifier"], kernel=kernel)
    sv = vectors.reshape(sum(per_class), -1)
    coef = coefficients.reshape(classes - 1, sum(per_class))
    start = np.cumsum([0, *per_class])[:-1]
    pairs = [(i, j) for i in range(classes) for j in range(i + 1, classes)]
    mix = np.zeros((len(sv), len(pairs)))  # support vector -> pair: the coefficient it carries in that pair
    votes_for, votes_against = np.zeros((len(pairs), classes)), np.zeros((len(pairs), classes))
    for p, (i, j) in enumerate(pairs):
        mix[start[i]:start[i] + per_class[i], p] = coef[j - 1, start[i]:start[i] + per_class[i]]
        mix[start[j]:start[j] + per_class[j], p] = coef[i, start[j]:start[j] + per_class[j]]
        votes_for[p, i], votes_against[p, j] = 1.0, 1.0
    weights, rho = (sv.T @ mix).T, np.asarray(attrs.get("rho", [0.0] * len(pairs)), dtype=np.float64)
    scores = low.matmul_bias(node.input[0], weights, rho)
    shown = low.matmul_bias(node.input[0], np.concatenate([-weights, weights]), np.concatenate([-rho, rho])) \
        if classes == 2 else scores
    low.node("Identity", [shown], [node.output[1]])
    positive = low.node("Cast", [low.node("Greater", [scores, low.const("zero", np.zeros(1, np.float32))])],
                        to=onnx.TensorProto.FLOAT)
    votes = low.node("Gemm", [positive, low.const("V", (votes_for - votes_against).astype(np.float32)),
                              low.const("Vb", votes_against.sum(axis=0).astype(np.float32))])
    low.label(votes, node.output[0], labels)
    return (f"SVMClassifier (linear kernel, {len(pairs)} one-vs-one pair(s)) as one matrix product, its votes and an "
            "argmax") + string_label_note(labels, node.output[0])


def _finish(low: Lowering, scores: str, transform: str, output: str, op: str) -> None:
    low.node("Identity", [low.post_transform(scores, transform, op)], [output])
