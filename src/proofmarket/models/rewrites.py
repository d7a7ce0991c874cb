"""Standard-domain nodes that EZKL's reader (tract) takes but the prover or onnxruntime does not, rewritten.

``Equal`` is written as the comparisons EZKL proves soundly:

EZKL 23.0.5 proves ``Equal -> Cast`` with the boolean at the wrong scale (a proof of a wrong answer: ``ops.py``),
so ``Equal`` itself is not an accepted operator. Its meaning is two comparisons EZKL does prove (``Less``,
``Greater``, ``Not``, ``Or`` and ``Xor`` are each proved and checked against a tampered proof by
``tests/models/test_models_ezkl.py``): ``a == b`` is ``not (a < b or a > b)``, and for booleans ``not (a xor b)``.
Tree models exported as tensor operations (hummingbird's GEMM form, EZKL's own tree examples) and attention masks
compare this way; the rewrite runs in the sandboxed check after constants are folded, so an ``Equal`` of shape
arithmetic is folded with the rest of the shape arithmetic. ``Equal`` of floats is then valid at any opset.

A ``MatMul`` of 8- or 16-bit integers (hummingbird's tree matrices; tract computes it, ONNX and onnxruntime have
no such MatMul) multiplies the values cast to int32 and casts the product back: the same numbers.

Each rewrite runs in the sandboxed check before constants are folded, and the rewritten model's outputs are then
checked against onnxruntime's on the samples like every model's.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, shape_inference

from proofmarket.models.ml_build import Lowering

_SMALL_INTS = frozenset({TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16})
_DEFAULT = ("", "ai.onnx")


def rewrite_standard(model: onnx.ModelProto) -> list[str]:
    """Rewrite in place; one note per kind of rewrite made (empty when nothing changed)."""
    graph = model.graph
    wanted = [n for n in graph.node if n.domain in _DEFAULT and n.op_type in ("Equal", "MatMul")]
    if not wanted:
        return []
    types = _elem_types(model)
    rebuilt: list[onnx.NodeProto] = []
    low = Lowering(graph, rebuilt, 0)
    counts = {"Equal": 0, "MatMul": 0}
    for index, node in enumerate(list(graph.node)):
        low.base = node.name.replace("/", "_").strip("_") or f"{node.op_type.lower()}_{index}"
        if node.domain not in _DEFAULT:
            rebuilt.append(node)
        elif node.op_type == "Equal":
            _equal(low, node, types)
            counts["Equal"] += 1
        elif node.op_type == "MatMul" and any(types.get(i) in _SMALL_INTS for i in node.input):
            small = next(types[i] for i in node.input if types.get(i) in _SMALL_INTS)
            wide = [low.node("Cast", [i], to=TensorProto.INT32) for i in node.input]
            low.node("Cast", [low.node("MatMul", wide)], list(node.output), to=small)
            counts["MatMul"] += 1
        else:
            rebuilt.append(node)
    del graph.node[:]
    graph.node.extend(rebuilt)
    notes = []
    if counts["Equal"]:
        notes.append(f"Equal as Not(Less or Greater) ({_nodes(counts['Equal'])})")
    if counts["MatMul"]:
        notes.append(f"a MatMul of 8- or 16-bit integers computed in int32 ({_nodes(counts['MatMul'])})")
    return notes


def _equal(low: Lowering, node: onnx.NodeProto, types: dict[str, int]) -> None:
    a, b = node.input
    if types.get(a) == TensorProto.BOOL or types.get(b) == TensorProto.BOOL:
        low.node("Not", [low.node("Xor", [a, b])], list(node.output))
    else:
        differs = low.node("Or", [low.node("Less", [a, b]), low.node("Greater", [a, b])])
        low.node("Not", [differs], list(node.output))


def _nodes(count: int) -> str:
    return f"{count} node{'s' if count != 1 else ''}"


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Every named value's element type that shape inference can tell (none when it cannot run)."""
    found = {i.name: i.data_type for i in model.graph.initializer}
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a model inference refuses is refused later with its own message
        return found
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if value.type.HasField("tensor_type"):
            found[value.name] = value.type.tensor_type.elem_type
    return found
