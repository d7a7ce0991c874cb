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

import onnx

from proofmarket.core.errors import InvalidModel

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
