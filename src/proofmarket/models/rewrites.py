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

``Gelu`` (opset 20, what torch's exporter writes for ``nn.GELU``) is written in the operators EZKL proves:
``0.5 x (1 + erf(x / sqrt 2))``, or with ``approximate="tanh"`` ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``
(the definitions of the ONNX operator).

An infinite constant (a causal attention mask's ``-inf``, written by ``masked_fill``) has no fixed-point value, and
a mask of the float's lowest value (``torch.finfo(...).min``, Hugging Face's) or of ``-1e9`` has none a circuit can
hold (EZKL refused it: "significant bit truncation"): after folding, every constant of magnitude at least
``MASK_MAGNITUDE`` is written as ``±INFINITY_AS`` and named in the model's metadata (``MASKS_KEY``). A softmax then
gives a masked position exp(-100 - max), zero at any circuit scale. The compile, with the samples and the input
domain in hand, fits the value to the scores the mask meets (``masks.py``: -100 set a 6-token head's circuit at 2^18
rows, its computation's 2^15).

Each rewrite runs in the sandboxed check before constants are folded, and the rewritten model's outputs are then
checked against onnxruntime's on the samples like every model's.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, shape_inference

from proofmarket.models.graph import readers
from proofmarket.models.ml_build import Lowering

_SMALL_INTS = frozenset({TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16})
_DEFAULT = ("", "ai.onnx")
INFINITY_AS = 100.0  # what a mask's constant becomes (attention masks): exp(-100) is 3.7e-44
MASK_MAGNITUDE = 1e9  # a constant this large is a mask: no circuit holds it (1e9 at the coarsest scale is 2^37)
MASKS_KEY = "proofmarket.masks"  # the model's metadata naming the constants written as masks


def rewrite_standard(model: onnx.ModelProto) -> list[str]:
    """Rewrite in place; one note per kind of rewrite made (empty when nothing changed)."""
    graph = model.graph
    wanted = [n for n in graph.node if n.domain in _DEFAULT and n.op_type in ("Equal", "MatMul", "Gelu")]
    if not wanted:
        return []
    types = _elem_types(model)
    rebuilt: list[onnx.NodeProto] = []
    low = Lowering(graph, rebuilt, 0)
    counts = {"Equal": 0, "MatMul": 0, "Gelu": 0}
    for index, node in enumerate(list(graph.node)):
        low.base = node.name.replace("/", "_").strip("_") or f"{node.op_type.lower()}_{index}"
        if node.domain not in _DEFAULT:
            rebuilt.append(node)
        elif node.op_type == "Equal":
            _equal(low, node, types)
            counts["Equal"] += 1
        elif node.op_type == "Gelu":
            _gelu(low, node)
            counts["Gelu"] += 1
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
    if counts["Gelu"]:
        notes.append(f"Gelu as its definition in Erf or Tanh ({_nodes(counts['Gelu'])})")
    if counts["MatMul"]:
        notes.append(f"a MatMul of 8- or 16-bit integers computed in int32 ({_nodes(counts['MatMul'])})")
    return notes


def drop_nan_guards(model: onnx.ModelProto) -> list[str]:
    """``Where(IsNaN(x), c, x)`` with a constant scalar ``c`` written as ``x`` (in place); one note, or none.

    torch's exporter writes this guard after ``scaled_dot_product_attention``'s softmax (Hugging Face's GPT-2 and
    LLaMA exports carry it): a fully masked row's softmax is NaN in floats, and the guard makes it 0. A circuit's
    values are field elements, never NaN, and its masks are finite: the guard selects ``x`` at every input. An
    ``IsNaN`` used any other way is left for the operator check to refuse."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers = readers(graph)
    scalars = {t.name for t in graph.initializer if int(np.prod(t.dims)) == 1}
    for node in graph.node:
        given = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if given is not None and (given.name in ("value_float", "value_int")
                                  or given.name == "value" and int(np.prod(given.t.dims)) == 1):
            scalars.add(node.output[0])
    outputs = {o.name for o in graph.output}
    guards: dict[str, onnx.NodeProto] = {}  # the IsNaN nodes read by a guard, by their output
    written: set[str] = set()  # the guards written as x, by their output
    for node in graph.node:
        guard = producers.get(node.input[0]) if node.op_type == "Where" and len(node.input) == 3 else None
        if (guard is not None and guard.op_type == "IsNaN" and guard.domain in _DEFAULT
                and node.input[2] == guard.input[0] and node.input[1] in scalars):
            node.op_type, node.input[:] = "Identity", [node.input[2]]
            guards[guard.output[0]] = guard
            written.add(node.output[0])
    for test, guard in guards.items():  # an IsNaN read by nothing else goes with its guards
        if test not in outputs and all(c.output[0] in written for c in consumers.get(test, [])):
            graph.node.remove(guard)
    return [f"NaN guards (Where(IsNaN(x), c, x)) as x: a circuit has no NaN ({_nodes(len(written))})"] \
        if written else []


def _equal(low: Lowering, node: onnx.NodeProto, types: dict[str, int]) -> None:
    a, b = node.input
    if types.get(a) == TensorProto.BOOL or types.get(b) == TensorProto.BOOL:
        low.node("Not", [low.node("Xor", [a, b])], list(node.output))
    else:
        differs = low.node("Or", [low.node("Less", [a, b]), low.node("Greater", [a, b])])
        low.node("Not", [differs], list(node.output))


def finite_constants(model: onnx.ModelProto) -> list[str]:
    """Infinite or mask-sized float constants (initializers, after folding: at least ``MASK_MAGNITUDE``) written
    as ``±INFINITY_AS``; one note, or none."""
    from onnx import numpy_helper

    changed: list[str] = []
    for index, init in enumerate(list(model.graph.initializer)):
        if init.data_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            continue
        array = numpy_helper.to_array(init)
        huge = np.abs(array.astype(np.float64)) >= MASK_MAGNITUDE  # inf included
        if huge.any():
            fixed = np.where(huge, np.sign(array) * INFINITY_AS, array).astype(array.dtype)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(fixed, init.name))
            changed.append(init.name)
    name_masks(model, changed)  # an uploaded model's own entry of that name is dropped: only these are masks
    return [f"infinite constants (attention masks: -inf or at least {MASK_MAGNITUDE:g} in magnitude) as "
            f"±{INFINITY_AS:g} ({len(changed)} tensor{'s' * (len(changed) != 1)})"] \
        if changed else []


def name_masks(model: onnx.ModelProto, names: list[str]) -> None:
    """Name the constants written as masks in the model's metadata (``MASKS_KEY``), for the compile that fits their
    value to the data (``masks.fit_masks``); no names: the entry removed."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != MASKS_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, *([(MASKS_KEY, ",".join(names))] if names else [])]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _gelu(low: Lowering, node: onnx.NodeProto) -> None:
    (x,) = node.input[:1]
    approximate = next((a.s.decode() for a in node.attribute if a.name == "approximate"), "none")

    def scalar(hint: str, value: float) -> str:
        return low.const(hint, np.array(value, dtype=np.float32))

    if approximate == "tanh":
        cube = low.node("Mul", [x, low.node("Mul", [x, x])])
        inner = low.node("Add", [x, low.node("Mul", [cube, scalar("c", 0.044715)])])
        shaped = low.node("Tanh", [low.node("Mul", [inner, scalar("k", math.sqrt(2.0 / math.pi))])])
    else:
        shaped = low.node("Erf", [low.node("Mul", [x, scalar("r", 1.0 / math.sqrt(2.0))])])
    half_x = low.node("Mul", [x, scalar("h", 0.5)])
    low.node("Mul", [half_x, low.node("Add", [shaped, scalar("one", 1.0)])], list(node.output))


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
