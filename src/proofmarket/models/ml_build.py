"""The small toolkit the ``ai.onnx.ml`` lowerings write with: constants, nodes, post-transforms and labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from proofmarket.core.errors import UnsupportedOperator


class Lowering:
    """Writes standard nodes in place of one ``ai.onnx.ml`` node (``base`` names them) into ``nodes``."""

    def __init__(self, graph: onnx.GraphProto, nodes: list[onnx.NodeProto], opset: int) -> None:
        self.graph, self.nodes, self.base, self.opset = graph, nodes, "ml", opset
        self._count = 0
        self._names = {i.name for i in graph.initializer} | {v.name for v in graph.input} | {
            o for n in graph.node for o in n.output}
        self._retyped: dict[str, int] = {}

    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{self.base}_{hint}_{self._count}"
            if name not in self._names:
                self._names.add(name)
                return name

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any) -> str:
        """Append ``op``; returns its (first) output name, a fresh one unless ``outputs`` names them."""
        outs = outputs or [self.fresh(op.lower())]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.fresh(op.lower()), **attrs))
        return outs[0]

    def retype(self, output: str, elem_type: int) -> None:
        """A graph output whose type the rewrite changes (a ZipMap's maps, a string label): re-declared as a
        tensor of ``elem_type`` whose shape inference fills in."""
        self._retyped[output] = elem_type

    def retype_outputs(self) -> None:
        """Re-declare the retyped outputs; a string output downstream of a string label (skl2onnx's Identity or
        Cast of it) becomes the index too."""
        strings = TensorProto.INT64 in self._retyped.values()
        for out in self.graph.output:
            elem = out.type.tensor_type.elem_type if out.type.HasField("tensor_type") else None
            if out.name in self._retyped:
                out.type.CopyFrom(helper.make_tensor_type_proto(self._retyped[out.name], None))
            elif strings and elem == TensorProto.STRING:
                out.type.CopyFrom(helper.make_tensor_type_proto(TensorProto.INT64, None))

    def reduce(self, op: str, x: str) -> str:
        """``op`` (ReduceSum, ReduceMax) over axis 1, kept: the axes an input from the opset that made them one."""
        since = {"ReduceSum": 13}.get(op, 18)
        if self.opset < since:
            return self.node(op, [x], axes=[1], keepdims=1)
        return self.node(op, [x, self.const("axes", np.asarray([1], dtype=np.int64))], keepdims=1)

    # --- the parts several lowerings share ---------------------------------------------------------
    def matmul_bias(self, x: str, weights: np.ndarray, bias: np.ndarray) -> str:
        """``x @ weights.T + bias`` (weights [targets, features]) as one Gemm."""
        return self.node("Gemm", [x, self.const("W", weights.astype(np.float32)),
                                  self.const("B", bias.astype(np.float32))], transB=1)

    def post_transform(self, scores: str, transform: str, op: str) -> str:
        """The ``post_transform`` of a linear or tree model: NONE, LOGISTIC or SOFTMAX (others refused)."""
        if transform == "NONE":
            return scores
        if transform == "LOGISTIC":
            return self.node("Sigmoid", [scores])
        if transform == "SOFTMAX":
            return self.node("Softmax", [scores], axis=-1)
        raise UnsupportedOperator(
            f"The model's {op} uses post_transform {transform}, which has no circuit form here (NONE, LOGISTIC and "
            "SOFTMAX do).", operators=[f"ai.onnx.ml.{op}"], post_transform=transform)

    def label(self, scores: str, output: str, labels: list[Any]) -> None:
        """The label output: the argmax of ``scores`` (the first on a tie, as onnxruntime), mapped to the integer
        class labels; string labels are served as the class's index (the output becomes int64)."""
        index = self.node("ArgMax", [scores], axis=1, keepdims=0)
        ints = [int(v) for v in labels] if labels and all(isinstance(v, int) for v in labels) else None
        if ints is None:
            self.node("Identity", [index], [output])
            self.retype(output, TensorProto.INT64)
        elif ints == list(range(len(ints))):
            self.node("Identity", [index], [output])
        else:
            self.node("Gather", [self.const("labels", np.asarray(ints, dtype=np.int64)), index], [output], axis=0)


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded; ``*_as_tensor`` forms read as lists)."""
    found: dict[str, Any] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value).tolist()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        name = attr.name[:-len("_as_tensor")] if attr.name.endswith("_as_tensor") else attr.name
        found[name] = value
    return found


def class_labels(attrs: dict[str, Any]) -> list[Any]:
    return list(attrs.get("classlabels_ints") or attrs.get("classlabels_int64s")
                or attrs.get("classlabels_strings") or [])


def string_label_note(labels: list[Any], output: str) -> str:
    if labels and not all(isinstance(v, int) for v in labels):
        shown = ", ".join(str(v) for v in labels[:8]) + (", ..." if len(labels) > 8 else "")
        return f"; the label output '{output}' is the class index into [{shown}] (a circuit has no strings)"
    return ""
