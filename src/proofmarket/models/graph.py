"""The checks and fixes of one ONNX graph before it is compiled: the ONNX checker, the operator allowlist, input
and output shapes made static (batch dimensions fixed to 1), numeric element types, default strides, tensor sizes.

``proofmarket.models.loader`` runs them in order on a model it read; each raises a ``ModelError`` naming what it
refuses, or fixes the graph in place and says whether it changed it.
"""

from __future__ import annotations

import onnx
from onnx import helper, shape_inference

from proofmarket.core.errors import InvalidModel, TensorTooLarge, UnsupportedOperator
from proofmarket.models.ops import DEFAULT_DOMAINS, OPS_NEEDING_STRIDES, SUPPORTED_OPS
from proofmarket.models.spec import TensorSpec

_CLASSIFIER_TAIL_OPS = frozenset({"Softmax", "LogSoftmax", "ArgMax"})
_ML_CLASSIFIERS = frozenset({"LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier", "ZipMap"})
_MAX_LISTED = 5


def first_line(exc: BaseException) -> str:
    """The exception's text on one line (whitespace collapsed), at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return text.rstrip(".")



def run_checker(model: onnx.ModelProto) -> None:
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidModel(
                f"Initializer '{init.name}' keeps its data in an external file that was not given with the model: "
                "give the model's folder with its data file (proofmarket compile reads the files beside the .onnx; "
                "an upload sends them as the field 'data'), or embed the weights (torch.onnx.export(..., "
                "external_data=False), or onnx.save(model, path, save_as_external_data=False)).",
                tensor=init.name,
            )
        _check_declared(init)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise InvalidModel(f"The model fails the ONNX checker: {first_line(exc)}.") from exc


def _check_declared(tensor: onnx.TensorProto) -> None:
    """A weight holds exactly the bytes its dimensions declare (a tensor declared [1] carrying megabytes is refused,
    not read as its first value by one tool and as an error by another)."""
    if not tensor.HasField("raw_data"):
        return
    elements = 1
    for d in tensor.dims:
        elements *= max(int(d), 0)
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return  # an unknown element type: the checker names it
    if tensor.data_type in (onnx.TensorProto.STRING,) or itemsize == 0:
        return
    expected = (elements * itemsize * 8 + 7) // 8
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        expected = (elements + 1) // 2
    if len(tensor.raw_data) != expected:
        raise InvalidModel(f"Initializer '{tensor.name}' declares {elements:,} elements ({expected:,} bytes) but holds "
                           f"{len(tensor.raw_data):,} bytes.", tensor=tensor.name, declared_bytes=expected,
                           bytes=len(tensor.raw_data))


def check_operators(model: onnx.ModelProto, *, domains_only: bool = False) -> frozenset[str]:
    """Refuse operators outside the allowlist (``domains_only``: only those outside the standard ONNX domain,
    checked before onnxruntime is asked to load and fold the graph)."""
    used: set[str] = set()
    bad: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        default = node.domain in DEFAULT_DOMAINS
        op = node.op_type if default else f"{node.domain}.{node.op_type}"
        used.add(op)
        if not default or (not domains_only and node.op_type not in SUPPORTED_OPS):
            bad.setdefault(op, []).append(node.name or f"#{index}")
    if bad:
        parts = [f"{op} (node '{nodes[0]}')" for op, nodes in list(bad.items())[:_MAX_LISTED]]
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        where = "outside the standard ONNX domain" if domains_only else \
            "left on the data path after constants and shape arithmetic were folded"
        raise UnsupportedOperator(
            f"The model uses operators that cannot be proven: {', '.join(parts)}{more} ({where}); replace them "
            "with supported operators (README: Operators).",
            operators=sorted(bad),
            nodes={op: nodes for op, nodes in bad.items()},
        )
    return frozenset(used)


def _numeric_dtype(kind: str, name: str, elem_type: int) -> str:
    """The numpy dtype name of a graph input's or output's (``kind``) element type; refused unless numeric."""
    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "fiub":  # booleans travel as 0 / 1
        type_name = onnx.TensorProto.DataType.Name(elem_type)
        raise InvalidModel(f"{kind} '{name}' has element type {type_name}; only numeric tensors are supported.",
                           tensor=name)
    return str(dtype.name)


def static_dim(dim: onnx.TensorShapeProto.Dimension) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def fix_inputs(model: onnx.ModelProto, batch_dim_ok: bool) -> tuple[list[TensorSpec], list[str]]:
    """Check graph inputs, fix their batch dims to 1 in place; return specs and batched names."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    specs: list[TensorSpec] = []
    batched: list[str] = []
    for value in graph.input:
        if value.name in initializers:
            continue
        name = value.name
        if not value.type.HasField("tensor_type"):
            raise InvalidModel(f"Input '{name}' is not a tensor.", tensor=name)
        ttype = value.type.tensor_type
        dtype = _numeric_dtype("Input", name, ttype.elem_type)
        if not ttype.HasField("shape"):
            raise InvalidModel(f"Input '{name}' has no declared shape.", tensor=name)
        shape: list[int] = []
        for i, dim in enumerate(ttype.shape.dim):
            size = static_dim(dim)
            if size is not None:
                shape.append(size)
                continue
            if dim.HasField("dim_value"):
                raise InvalidModel(
                    f"Input '{name}' has dimension {i} of size {dim.dim_value}.", tensor=name, dim=i
                )
            label = f" ('{dim.dim_param}')" if dim.dim_param else ""
            if i != 0:
                raise InvalidModel(
                    f"Input '{name}' has a dynamic dimension {i}{label}; "
                    "only a leading batch dimension may be dynamic.",
                    tensor=name,
                    dim=i,
                )
            if not batch_dim_ok:
                raise InvalidModel(
                    f"Input '{name}' has a dynamic batch dimension{label}, which is not accepted here.",
                    tensor=name,
                    dim=i,
                )
            dim.Clear()
            dim.dim_value = 1
            shape.append(1)
            batched.append(name)
        specs.append(TensorSpec(name, tuple(shape), dtype))
    if not specs:
        raise InvalidModel("The model has no inputs.")
    return specs, batched


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
        raise InvalidModel(f"ONNX shape inference fails on the model: {first_line(exc)}.") from exc


def _is_static(value: onnx.ValueInfoProto) -> bool:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return False
    return all(static_dim(d) is not None for d in value.type.tensor_type.shape.dim)


def fix_outputs(model: onnx.ModelProto, inferred: onnx.ModelProto) -> tuple[list[TensorSpec], bool]:
    """Copy the inferred static output shapes into ``model``; refuse outputs that stay dynamic."""
    changed = False
    specs: list[TensorSpec] = []
    for out, inf in zip(model.graph.output, inferred.graph.output, strict=True):
        name = out.name
        ttype = inf.type.tensor_type
        if not inf.type.HasField("tensor_type") or not ttype.HasField("shape"):
            raise InvalidModel(f"Output '{name}' has a shape that cannot be inferred.", tensor=name)
        shape: list[int] = []
        for i, dim in enumerate(ttype.shape.dim):
            size = static_dim(dim)
            if size is None:
                raise InvalidModel(
                    f"Output '{name}' has dimension {i} that is not fixed once batch dimensions are 1.",
                    tensor=name,
                    dim=i,
                )
            shape.append(size)
        dtype = _numeric_dtype("Output", name, ttype.elem_type)
        if not _is_static(out) or out.type.tensor_type.elem_type != ttype.elem_type:
            changed = True
        out.type.CopyFrom(inf.type)
        specs.append(TensorSpec(name, tuple(shape), dtype))
    if not specs:
        raise InvalidModel("The model has no outputs.")
    return specs, changed


def drop_dynamic_value_info(model: onnx.ModelProto) -> bool:
    keep = [v for v in model.graph.value_info if _is_static(v)]
    if len(keep) == len(model.graph.value_info):
        return False
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    return True


def _spatial_rank(node: onnx.NodeProto, ranks: dict[str, int]) -> int | None:
    for attr in node.attribute:
        if attr.name == "kernel_shape":
            return len(attr.ints)
    rank = ranks.get(node.input[0]) if node.input else None
    return rank - 2 if rank is not None and rank > 2 else None


def add_default_strides(model: onnx.ModelProto, inferred: onnx.ModelProto) -> bool:
    ranks: dict[str, int] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    for init in graph.initializer:
        ranks[init.name] = len(init.dims)
    changed = False
    for index, node in enumerate(model.graph.node):
        if node.op_type not in OPS_NEEDING_STRIDES or any(a.name == "strides" for a in node.attribute):
            continue
        rank = _spatial_rank(node, ranks)
        if rank is None:
            raise InvalidModel(
                f"{node.op_type} node '{node.name or f'#{index}'}' has no strides and no known input rank.",
                node=node.name,
            )
        node.attribute.append(helper.make_attribute("strides", [1] * rank))
        changed = True
    return changed


def classifier_evidence(model: onnx.ModelProto, outputs: list[TensorSpec]) -> str | None:
    """What shows the model is a classifier, in words, or None. Only evidence counts: a label or class-probability
    output (a Softmax, LogSoftmax or ArgMax at the end, one probability from a Sigmoid, a scikit-learn classifier).
    An output of shape [1, N] alone is no evidence (a regression of N values, an embedding, logits whose owner did
    not say): the owner states the task (``--task``) when it is a classifier."""
    for node in model.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in _ML_CLASSIFIERS:
            return f"it is a scikit-learn classifier ({node.op_type})"
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    tails = [producers.get(spec.name, "") for spec in outputs]
    for spec, op in zip(outputs, tails, strict=True):
        if op in _CLASSIFIER_TAIL_OPS:
            return f"its output {spec.name!r} comes from a {op}"
    if len(outputs) == 1 and tails[0] == "Sigmoid" and outputs[0].size == 1:
        return f"its one output {outputs[0].name!r} is a probability from a Sigmoid"
    return None


def check_elements(model: onnx.ModelProto, inferred: onnx.ModelProto, limit: int) -> None:
    """Refuse any tensor with more than ``limit`` elements: weights (initializers, Constant values) and every
    graph input, output and intermediate whose shape inference made static."""
    sized: list[tuple[str, list[int]]] = [(i.name, list(i.dims)) for i in model.graph.initializer]
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                sized.append((node.name or node.op_type, list(attr.t.dims)))
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            sized.append((value.name, [d.dim_value if d.HasField("dim_value") else 0
                                       for d in value.type.tensor_type.shape.dim]))
    for name, dims in sized:
        elements = 1
        for d in dims:
            elements *= max(int(d), 0)
        if elements > limit:
            raise TensorTooLarge(
                f"Tensor '{name}' has {elements:,} elements, over the limit of {limit:,} per tensor.",
                tensor=name,
                elements=elements,
                max_elements=limit,
            )




def readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Each value's reading nodes, in graph order (a node reading a value twice is listed twice)."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


#: Nodes whose output holds every value of their first input and no other (rearranged, or cast between integers)
_SAME_VALUES = frozenset({"Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})


def index_limits(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """The range each integer graph input must lie in where it indexes a table: an input read (directly, or through
    nodes that keep every one of its values: a Cast, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Identity; Hugging
    Face's models flatten the token ids first) as a Gather's indices over a table of static shape takes
    [0, rows - 1] of the gathered axis (a token id over an embedding's vocabulary). Several tables: the narrowest.
    Other inputs are not named."""
    graph = model.graph
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for info in (*graph.value_info, *graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in info.type.tensor_type.shape.dim]
        shapes.setdefault(info.name, dims)
    source_of = {name: name for name in inputs}  # a value holding exactly some input's values, rearranged
    for node in graph.node:
        if node.op_type in _SAME_VALUES and node.input and node.input[0] in source_of:
            source_of[node.output[0]] = source_of[node.input[0]]
    limits: dict[str, tuple[int, int]] = {}
    for node in graph.node:
        if node.op_type != "Gather" or len(node.input) < 2:
            continue
        source = source_of.get(node.input[1])
        table = shapes.get(node.input[0])
        if source is None or not table:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        rows = table[axis] if -len(table) <= axis < len(table) else 0
        if rows > 0:
            low, high = limits.get(source, (0, rows - 1))
            limits[source] = (max(low, 0), min(high, rows - 1))
    return limits
