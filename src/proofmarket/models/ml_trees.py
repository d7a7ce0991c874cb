"""Tree ensembles (decision trees, random forests, gradient boosting) in matrix form, for ``ml_ops``.

Every split of every tree is one column: its feature is gathered from the input and compared with its threshold,
giving a decision ``d`` of exactly 0 or 1. A leaf is reached when each split on its path went its way: with ``s`` = +1
for a split the path takes on its true branch and -1 on its false branch, ``sum(s * d)`` over the path equals the
number of true branches on it for the reached leaf and is smaller for every other, so
``relu(sum(s * d) - trues + 1)`` is 1 on the reached leaf of each tree and 0 elsewhere (integers: exact in a
circuit whatever its scale). The leaves' values, summed over the trees by one matrix product, plus the base values,
are the scores; then the post-transform and, for a classifier, the argmax as the label.

Cost: one comparison per split, ``leaves x depth`` products and ``leaves x classes`` for the sum. Limits, checked
before anything is built (``TreeEnsembleTooLarge`` names the one passed): depth ``MAX_DEPTH``, ``MAX_TREES`` trees,
``MAX_LEAVES`` leaves in all. Branch modes: ``<=``, ``<``, ``>=``, ``>`` (``==`` and ``!=`` splits are refused).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from proofmarket.core.errors import TreeEnsembleTooLarge, UnsupportedOperator
from proofmarket.models.ml_build import Lowering, attributes, class_labels, string_label_note

MAX_DEPTH = 12
MAX_TREES = 500
MAX_LEAVES = 16_384

_COMPARE = {"BRANCH_LEQ": "LessOrEqual", "BRANCH_LT": "Less", "BRANCH_GTE": "GreaterOrEqual", "BRANCH_GT": "Greater"}


@dataclass
class _Forest:
    splits: list[tuple[str, int, float]] = field(default_factory=list)  # (mode, feature, threshold)
    paths: list[list[tuple[int, int]]] = field(default_factory=list)  # per leaf: (split index, +1 or -1)
    leaf_of: dict[tuple[int, int], int] = field(default_factory=dict)  # (tree, node id) -> leaf index
    trees: int = 0


def tree_ensemble(low: Lowering, node: onnx.NodeProto) -> str:
    attrs = attributes(node)
    op = node.op_type
    forest = _read(attrs, op)
    classifier = op == "TreeEnsembleClassifier"
    prefix = "class" if classifier else "target"
    labels = class_labels(attrs) if classifier else []
    ids = [int(v) for v in attrs.get(f"{prefix}_ids", [])]
    width = len(labels) if classifier else int(attrs.get("n_targets", 1))
    binary = classifier and len(labels) == 2 and len(set(ids)) == 1
    values = np.zeros((len(forest.paths), 1 if binary else width), dtype=np.float64)
    for tree, nid, target, weight in zip(attrs.get(f"{prefix}_treeids", []), attrs.get(f"{prefix}_nodeids", []), ids,
                                         attrs.get(f"{prefix}_weights", []), strict=False):
        leaf = forest.leaf_of.get((int(tree), int(nid)))
        if leaf is None or not 0 <= (0 if binary else target) < values.shape[1]:
            raise UnsupportedOperator(f"The model's {op} gives a value to node {nid} of tree {tree}, which is not "
                                      "one of its leaves.", operators=[f"ai.onnx.ml.{op}"])
        values[leaf, 0 if binary else target] += float(weight)
    base = np.zeros(values.shape[1], dtype=np.float64)
    given = np.asarray(attrs.get("base_values", []), dtype=np.float64).reshape(-1)
    base[:min(len(given), len(base))] = given[:len(base)]
    aggregate = str(attrs.get("aggregate_function", "SUM"))
    if aggregate == "AVERAGE":
        values /= max(forest.trees, 1)
    elif aggregate != "SUM":
        raise UnsupportedOperator(f"The model's {op} aggregates its trees by {aggregate} (SUM and AVERAGE are "
                                  "lowered).", operators=[f"ai.onnx.ml.{op}"], aggregate_function=aggregate)
    transform = str(attrs.get("post_transform", "NONE"))
    if binary:  # one score s for the second class: [-s, s], or [1 - s, s] for probabilities (onnxruntime's rule)
        positive = transform == "NONE" and bool(np.all(values >= 0))
        values = np.concatenate([-values, values], axis=1)
        base = np.asarray([1.0 - base[0] if positive else -base[0], base[0]])
    reached = _reached(low, node.input[0], forest)
    scores = low.node("Gemm", [reached, low.const("leaves", values.astype(np.float32)),
                               low.const("base", base.astype(np.float32))])
    scores = low.post_transform(scores, transform, op)
    if classifier:
        low.node("Identity", [scores], [node.output[1]])
        low.label(scores, node.output[0], labels)
    else:
        low.node("Identity", [scores], [node.output[0]])
    what = "classifier" if classifier else "regressor"
    return (f"{op}: {forest.trees} tree(s), {len(forest.splits)} splits, {len(forest.paths)} leaves, as a {what} "
            "in matrix form") + (string_label_note(labels, node.output[0]) if classifier else "")


def _reached(low: Lowering, x: str, forest: _Forest) -> str:
    """The [1, leaves] tensor of 0/1: 1 on the leaf each tree reaches."""
    by_mode: dict[str, list[int]] = defaultdict(list)
    for index, (mode, _, _) in enumerate(forest.splits):
        by_mode[mode].append(index)
    order: list[int] = []
    parts: list[str] = []
    one, zero = low.const("one", np.asarray(1.0, np.float32)), low.const("zero", np.asarray(0.0, np.float32))
    for mode, members in by_mode.items():
        features = np.asarray([forest.splits[i][1] for i in members], dtype=np.int64)
        thresholds = np.asarray([forest.splits[i][2] for i in members], dtype=np.float32)
        picked = low.node("Gather", [x, low.const("features", features)], axis=1)
        passed = _compare(low, mode, picked, low.const("thresholds", thresholds))
        parts.append(low.node("Where", [passed, one, zero]))
        order.extend(members)
    decisions = parts[0] if len(parts) == 1 else low.node("Concat", parts, axis=1)
    column = {split: position for position, split in enumerate(order)}
    depth = max(1, max(len(p) for p in forest.paths))
    at = np.zeros((len(forest.paths), depth), dtype=np.int64)
    sign = np.zeros((len(forest.paths), depth), dtype=np.float32)
    for leaf, path in enumerate(forest.paths):
        for step, (split, direction) in enumerate(path):
            at[leaf, step], sign[leaf, step] = column[split], direction
    trues = np.asarray([sum(1 for _, d in p if d > 0) for p in forest.paths], dtype=np.float32)
    along = low.node("Gather", [decisions, low.const("paths", at)], axis=1)  # [1, leaves, depth]
    signed = low.node("Mul", [along, low.const("signs", sign)])
    total = low.node("MatMul", [signed, low.const("ones", np.ones((depth, 1), dtype=np.float32))])  # [1, leaves, 1]
    flat = low.node("Reshape", [total, low.const("shape", np.asarray([1, len(forest.paths)], dtype=np.int64))])
    return low.node("Relu", [low.node("Add", [flat, low.const("offset", 1.0 - trues)])])


def _compare(low: Lowering, mode: str, x: str, threshold: str) -> str:
    """``x <mode> threshold``; before opset 12 (no LessOrEqual nor GreaterOrEqual) as the negated strict one."""
    if low.opset < 12 and mode in ("BRANCH_LEQ", "BRANCH_GTE"):
        return low.node("Not", [low.node("Greater" if mode == "BRANCH_LEQ" else "Less", [x, threshold])])
    return low.node(_COMPARE[mode], [x, threshold])


def _read(attrs: dict[str, Any], op: str) -> _Forest:
    nodes: dict[int, dict[int, tuple[str, int, float, int, int]]] = defaultdict(dict)
    for tree, nid, feature, value, mode, true, false in zip(
            attrs.get("nodes_treeids", []), attrs.get("nodes_nodeids", []), attrs.get("nodes_featureids", []),
            attrs.get("nodes_values", []), attrs.get("nodes_modes", []), attrs.get("nodes_truenodeids", []),
            attrs.get("nodes_falsenodeids", []), strict=False):
        nodes[int(tree)][int(nid)] = (str(mode), int(feature), float(value), int(true), int(false))
    if len(nodes) > MAX_TREES:
        raise _too_large(op, f"{len(nodes)} trees, over the limit of {MAX_TREES}", trees=len(nodes))
    leaves = sum(1 for tree in nodes.values() for n in tree.values() if n[0] == "LEAF")
    if leaves > MAX_LEAVES:
        raise _too_large(op, f"{leaves} leaves in all, over the limit of {MAX_LEAVES}", leaves=leaves)
    forest = _Forest(trees=len(nodes))
    for tree_id, tree in sorted(nodes.items()):
        roots = set(tree) - {n[3] for n in tree.values() if n[0] != "LEAF"} - {n[4] for n in tree.values()
                                                                             if n[0] != "LEAF"}
        if len(roots) != 1:
            raise UnsupportedOperator(f"Tree {tree_id} of the model's {op} does not have exactly one root.",
                                      operators=[f"ai.onnx.ml.{op}"])
        _walk(forest, op, tree_id, tree, roots.pop(), [])
    if not forest.splits:
        raise UnsupportedOperator(f"The model's {op} has no split: its output does not depend on the input.",
                                  operators=[f"ai.onnx.ml.{op}"])
    return forest


def _walk(forest: _Forest, op: str, tree_id: int, tree: dict[int, tuple[str, int, float, int, int]], nid: int,
          path: list[tuple[int, int]]) -> None:
    if len(path) > MAX_DEPTH:
        raise _too_large(op, f"a tree (tree {tree_id}) deeper than the limit of {MAX_DEPTH}", depth=len(path))
    if nid not in tree:
        raise UnsupportedOperator(f"Tree {tree_id} of the model's {op} names node {nid}, which it does not have.",
                                  operators=[f"ai.onnx.ml.{op}"])
    mode, feature, value, true, false = tree[nid]
    if mode == "LEAF":
        if len(forest.paths) >= MAX_LEAVES:  # nodes shared by several parents reach more leaves than are listed
            raise _too_large(op, f"over {MAX_LEAVES} paths to its leaves", leaves=len(forest.paths) + 1)
        forest.leaf_of[(tree_id, nid)] = len(forest.paths)
        forest.paths.append(path)
        return
    if mode not in _COMPARE:
        raise UnsupportedOperator(f"The model's {op} has {mode} splits, which are not lowered (<=, <, >= and > are).",
                                  operators=[f"ai.onnx.ml.{op}"], mode=mode)
    split = len(forest.splits)
    forest.splits.append((mode, feature, value))
    _walk(forest, op, tree_id, tree, true, [*path, (split, 1)])
    _walk(forest, op, tree_id, tree, false, [*path, (split, -1)])


def _too_large(op: str, what: str, **details: Any) -> TreeEnsembleTooLarge:
    return TreeEnsembleTooLarge(
        f"The model's {op} has {what}: train a smaller ensemble (fewer or shallower trees) to prove it.",
        operators=[f"ai.onnx.ml.{op}"], max_depth=MAX_DEPTH, max_trees=MAX_TREES, max_leaves=MAX_LEAVES, **details)
