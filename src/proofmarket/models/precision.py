"""Models written in float64 (double) are computed in float32: the form every lowering and the circuit work in.

scikit-learn fits in float64, so ``skl2onnx.to_onnx(model, X[:1])`` on numpy's default arrays writes a graph whose
inputs, constants and casts are ``double``. A circuit quantises every value to fixed point (a scale of a few bits
after the point), far below float32's precision, so nothing a proof states depends on the difference; onnxruntime
and the ``ai.onnx.ml`` lowerings (``ml_ops``), however, refuse a graph that mixes the two. The whole graph (inputs,
outputs, intermediate types, initializers, constants, casts and subgraphs) is rewritten to float32 in one place,
before anything else reads it, and the compile report says so.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

NOTE = ("float64 (double) tensors are computed in float32 (the circuit quantises to fixed point far below either "
        "precision; export with float32 inputs to skip this step)")

_TYPE_ATTRIBUTES = ("to", "dtype", "output_datatype")  # Cast, EyeLike/Random*, ... : an element type by number


def to_float32(model: onnx.ModelProto) -> str | None:
    """Rewrite ``model`` in place when it holds any double tensor; the note for the compile report, else None."""
    if not _has_double(model.graph):
        return None
    _graph(model.graph)
    return NOTE


def _has_double(graph: onnx.GraphProto) -> bool:
    if any(_type_has_double(v.type) for v in (*graph.input, *graph.output, *graph.value_info)):
        return True
    if any(t.data_type == TensorProto.DOUBLE for t in graph.initializer):
        return True
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in _TYPE_ATTRIBUTES and attr.type == onnx.AttributeProto.INT and attr.i == TensorProto.DOUBLE:
                return True
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.DOUBLE:
                return True
            if attr.type == onnx.AttributeProto.GRAPH and _has_double(attr.g):
                return True
            if attr.type == onnx.AttributeProto.GRAPHS and any(_has_double(g) for g in attr.graphs):
                return True
    return False


def _type_has_double(value: onnx.TypeProto) -> bool:
    kind = value.WhichOneof("value")
    if kind == "tensor_type":
        return value.tensor_type.elem_type == TensorProto.DOUBLE
    if kind == "sequence_type":
        return _type_has_double(value.sequence_type.elem_type)
    if kind == "map_type":
        return _type_has_double(value.map_type.value_type)
    if kind == "optional_type":
        return _type_has_double(value.optional_type.elem_type)
    return False


def _retype(value: onnx.TypeProto) -> None:
    kind = value.WhichOneof("value")
    if kind == "tensor_type" and value.tensor_type.elem_type == TensorProto.DOUBLE:
        value.tensor_type.elem_type = TensorProto.FLOAT
    elif kind == "sequence_type":
        _retype(value.sequence_type.elem_type)
    elif kind == "map_type":
        _retype(value.map_type.value_type)
    elif kind == "optional_type":
        _retype(value.optional_type.elem_type)


def _tensor(tensor: onnx.TensorProto) -> None:
    if tensor.data_type != TensorProto.DOUBLE:
        return
    converted = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)
    tensor.CopyFrom(converted)


def _graph(graph: onnx.GraphProto) -> None:
    for value in (*graph.input, *graph.output, *graph.value_info):
        _retype(value.type)
    for tensor in graph.initializer:
        _tensor(tensor)
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in _TYPE_ATTRIBUTES and attr.type == onnx.AttributeProto.INT and attr.i == TensorProto.DOUBLE:
                attr.i = TensorProto.FLOAT
            elif attr.type == onnx.AttributeProto.TENSOR:
                _tensor(attr.t)
            elif attr.type == onnx.AttributeProto.TENSORS:
                for tensor in attr.tensors:
                    _tensor(tensor)
            elif attr.type == onnx.AttributeProto.GRAPH:
                _graph(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _graph(sub)
