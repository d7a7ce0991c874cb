"""Fold constant subgraphs and shape arithmetic before the operator check.

Exporters write shape arithmetic into the graph: torch's Flatten/Unflatten/view export
``Shape -> Gather -> Mod/Add -> Concat -> Reshape`` chains, and constants arrive as ``Constant`` nodes
feeding ``Mul``/``Add``. Once the input shapes are static (batch dimension fixed to 1) every such chain
is a constant; left in place it makes a model look unprovable (``Mod`` is not a circuit operator) and it
costs circuit rows. onnxruntime's offline graph optimisation at the *basic* level folds them:
constant folding (``Shape`` of a static tensor included), redundant-node elimination (Identity,
Dropout, no-op Slice/Unsqueeze) and the standard-op fusions (Conv+BatchNorm, Conv+Add/Mul, Reshape
chains). Only ONNX operators come out of that level.

Why onnxruntime and not onnxsim/onnxslim: it is already the runtime that computes the reference outputs
the accuracy bound is measured against, so folding adds no dependency and cannot disagree with the
reference about what a node means.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from proofmarket.core.errors import InvalidModel, TensorTooLarge

#: Nodes whose value is known before any input is: folded away (with Identity/Dropout, always removable).
_CONSTANT_SOURCES = frozenset({"Constant", "ConstantOfShape", "Shape", "Size", "Range"})
_REMOVABLE = frozenset({"Identity", "Dropout"})


def foldable(model: onnx.ModelProto) -> bool:
    """Is there anything to fold (a node computable from constants and static shapes alone, or a no-op)?
    False lets a graph with nothing to fold skip onnxruntime's optimisation pass (a session build)."""
    known = {init.name for init in model.graph.initializer}
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in _CONSTANT_SOURCES or node.op_type in _REMOVABLE:
            return True
        inputs = [name for name in node.input if name]
        if inputs and all(name in known for name in inputs):
            return True
    return False


def check_folded_sizes(model: onnx.ModelProto, limit: int) -> None:
    """Refuse a node whose output, computed from constants alone, would have more than ``limit`` elements, before
    onnxruntime folds it (``ConstantOfShape([2**33])`` is a few bytes of file and 32 GiB of fold). Counts what the
    constants fix: ConstantOfShape's and Expand's shapes, Tile's repeats, Range's length, Resize's sizes; the
    tensor check after folding sees the rest."""
    values = _constant_ints(model)
    for node in model.graph.node:
        elements = _output_elements(node, values)
        if elements is not None and elements > limit:
            tensor = node.output[0] if node.output else node.name or node.op_type
            raise TensorTooLarge(f"Tensor '{tensor}' (from {node.op_type} node '{node.name or node.op_type}') would "
                                 f"have {elements:,} elements, over the limit of {limit:,} per tensor.", tensor=tensor,
                                 elements=elements, max_elements=limit)


def _output_elements(node: onnx.NodeProto, values: dict[str, list[int]]) -> int | None:
    def const(index: int) -> list[int] | None:
        return values.get(node.input[index]) if len(node.input) > index and node.input[index] else None

    op = node.op_type
    if op in ("ConstantOfShape", "Expand"):
        dims = const(0 if op == "ConstantOfShape" else 1)
        return _product(dims) if dims is not None else None
    if op == "Tile":
        repeats = const(1)
        return _product(repeats) if repeats is not None else None
    if op == "Range":
        start, limit, delta = const(0), const(1), const(2)
        if start and limit and delta and delta[0] != 0:
            return max(0, -(-(limit[0] - start[0]) // delta[0]))
        return None
    if op == "Resize":
        sizes = const(3)
        return _product(sizes) if sizes else None
    return None


def _product(dims: list[int]) -> int:
    total = 1
    for d in dims:
        total *= max(int(d), 1)
    return total


#: Constants this long or shorter are read as shapes (a shape has a handful of dimensions).
_MAX_SHAPE_LEN = 64


def _constant_ints(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Small integer (and float, for Range) constants by name: initializers and Constant nodes."""
    from onnx import numpy_helper

    found: dict[str, list[int]] = {}

    def read(name: str, tensor: onnx.TensorProto) -> None:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.dims) > 1:
            return
        count = _product(list(tensor.dims)) if tensor.dims else 1
        if count > _MAX_SHAPE_LEN:
            return
        try:
            array = numpy_helper.to_array(tensor)
        except Exception:  # a malformed tensor: the checker or onnxruntime refuses it with its own words
            return
        if array.dtype.kind in "iuf" and array.size <= _MAX_SHAPE_LEN and np.isfinite(array).all():
            found[name] = [int(v) for v in array.reshape(-1).tolist()]  # (an attention mask's -inf is no shape)

    for init in model.graph.initializer:
        read(init.name, init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    read(node.output[0], attr.t)
                elif attr.name in ("value_int", "value_ints"):
                    found[node.output[0]] = [attr.i] if attr.name == "value_int" else list(attr.ints)
    return found


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with constant subgraphs folded (see the module docstring); inputs, outputs, opsets and
    metadata as given. Raise ``InvalidModel`` when onnxruntime cannot load the model at all."""
    import onnxruntime as ort  # loads in ~0.2 s: only when a model is checked

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="proofmarket-fold-") as tmp:
        out = Path(tmp) / "folded.onnx"
        options.optimized_model_filepath = str(out)
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            text = " ".join(str(exc).split())[:300].rstrip(".")
            raise InvalidModel(f"onnxruntime cannot load the model: {text}.") from exc
        folded = onnx.load(str(out))
    used = {node.domain for node in folded.graph.node}
    del folded.opset_import[:]
    folded.opset_import.extend(o for o in model.opset_import if o.domain in used or o.domain in ("", "ai.onnx"))
    folded.ir_version = model.ir_version
    folded.producer_name, folded.producer_version = model.producer_name, model.producer_version
    del folded.metadata_props[:]
    folded.metadata_props.extend(model.metadata_props)
    return folded
