"""Load, check and normalise ONNX models before they are compiled into circuits."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import helper, shape_inference

from proofmarket.core.errors import InvalidModel, ModelTooLarge, TensorTooLarge, UnsupportedOperator
from proofmarket.models.fold import fold_constants, foldable
from proofmarket.models.ml_ops import rewrite_ml_ops
from proofmarket.models.ops import (
    DEFAULT_DOMAINS,
    MAX_OPSET,
    MIN_OPSET,
    OPS_NEEDING_STRIDES,
    SUPPORTED_OPS,
)
from proofmarket.models.spec import ModelInfo, TensorSpec

MiB = 1024 * 1024
#: Default size limit for a model file.
MAX_MODEL_BYTES = 100 * MiB
#: Default limit on the elements of any one tensor (weights, input, output, intermediate): far above what
#: a circuit can prove, low enough that a small file cannot make the compiler allocate without bound.
MAX_TENSOR_ELEMENTS = 1 << 24

_CLASSIFIER_TAIL_OPS = frozenset({"Softmax", "LogSoftmax", "ArgMax"})
_MAX_LISTED = 5


def model_commitment(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the model file's bytes: the model commitment."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_MODEL_BYTES,
    batch_dim_ok: bool = True,
    max_tensor_elements: int = MAX_TENSOR_ELEMENTS,
) -> ModelInfo:
    """Check an ONNX file and describe it; raise a :class:`~proofmarket.core.errors.ModelError` if refused.

    Refusals: ``ModelTooLarge`` (file over ``max_bytes``), ``InvalidModel`` (not ONNX, fails the ONNX
    checker, opset outside ``MIN_OPSET..MAX_OPSET``, dynamic dimensions other than a leading batch
    dimension, non-numeric inputs, shapes that do not become static), ``UnsupportedOperator``
    (operators outside :data:`~proofmarket.models.ops.SUPPORTED_OPS`), ``TensorTooLarge`` (a tensor with
    more than ``max_tensor_elements`` elements, once shapes are inferred). A symbolic or unknown leading
    dimension is a batch dimension and is fixed to 1 (refused when ``batch_dim_ok`` is false).
    """
    return _check(Path(path), max_bytes=max_bytes, batch_dim_ok=batch_dim_ok,
                  max_tensor_elements=max_tensor_elements).info


def normalize_model(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_MODEL_BYTES,
    batch_dim_ok: bool = True,
    max_tensor_elements: int = MAX_TENSOR_ELEMENTS,
) -> ModelInfo:
    """Write a copy of the model that EZKL can compile and return the copy's :class:`ModelInfo`.

    The copy has every input and output shape static (batch dimensions fixed to 1), drops
    ``value_info`` entries with symbolic shapes, and spells out the default ``strides`` of Conv and
    pooling nodes. Its ``sha256`` differs from the original's: commit to the original upload and
    compile the copy. Writing is atomic; the same input always gives the same bytes.
    """
    checked = _check(Path(path), max_bytes=max_bytes, batch_dim_ok=batch_dim_ok,
                     max_tensor_elements=max_tensor_elements)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = checked.normalized.SerializeToString(deterministic=True)
    fd, tmp = tempfile.mkstemp(prefix=".normalize-", suffix=".onnx", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return load_model(out, max_bytes=max(max_bytes, len(data)), batch_dim_ok=False,
                      max_tensor_elements=max_tensor_elements)


# --- internals -------------------------------------------------------------------------------------


@dataclass
class _Checked:
    info: ModelInfo
    normalized: onnx.ModelProto


def _read(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidModel(f"There is no model file at {path}.", path=str(path)) from None
    except OSError as exc:
        raise InvalidModel(f"The model file {path} cannot be read ({exc.strerror}).", path=str(path)) from exc
    if path.is_dir():
        raise InvalidModel(f"The model path {path} is a directory, not an ONNX file.", path=str(path))
    if size > max_bytes:
        raise ModelTooLarge(
            f"The model file is {_size(size)}, over the {_size(max_bytes)} limit.",
            size_bytes=size,
            max_bytes=max_bytes,
        )
    data = path.read_bytes()
    if len(data) > max_bytes:  # grew between stat and read
        raise ModelTooLarge(
            f"The model file is {_size(len(data))}, over the {_size(max_bytes)} limit.",
            size_bytes=len(data),
            max_bytes=max_bytes,
        )
    return data


def _parse(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidModel("The file is not a parseable ONNX model (protobuf decoding failed).") from exc
    if not data or not model.HasField("graph") or len(model.graph.node) == 0:
        raise InvalidModel("The file is not an ONNX model: it has no graph nodes.")
    return model


def _opset(model: onnx.ModelProto) -> int:
    versions = [int(o.version) for o in model.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise InvalidModel("The model does not declare a default-domain ONNX opset.")
    opset = max(versions)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InvalidModel(
            f"The model uses ONNX opset {opset}, outside the supported range {MIN_OPSET} to {MAX_OPSET}.",
            opset=opset,
            min_opset=MIN_OPSET,
            max_opset=MAX_OPSET,
        )
    return opset


def _first_line(exc: BaseException) -> str:
    """The exception's text on one line (whitespace collapsed), at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return text.rstrip(".")


def _size(n: int) -> str:
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def _run_checker(model: onnx.ModelProto) -> None:
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidModel(
                f"Initializer '{init.name}' keeps its data in an external file; embed the weights in the .onnx "
                "file (torch.onnx.export(..., external_data=False), or onnx.save(model, path, "
                "save_as_external_data=False)).",
                tensor=init.name,
            )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise InvalidModel(f"The model fails the ONNX checker: {_first_line(exc)}.") from exc


def _check_operators(model: onnx.ModelProto, *, domains_only: bool = False) -> frozenset[str]:
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


def _dtype_name(elem_type: int) -> str | None:
    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, ValueError):
        return None
    return dtype.name if dtype.kind in "fiub" else None  # booleans travel as 0 / 1


def _static_dim(dim: onnx.TensorShapeProto.Dimension) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _fix_inputs(model: onnx.ModelProto, batch_dim_ok: bool) -> tuple[list[TensorSpec], list[str]]:
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
        dtype = _dtype_name(ttype.elem_type)
        if dtype is None:
            type_name = onnx.TensorProto.DataType.Name(ttype.elem_type)
            raise InvalidModel(
                f"Input '{name}' has element type {type_name}; only numeric tensors are supported.",
                tensor=name,
            )
        if not ttype.HasField("shape"):
            raise InvalidModel(f"Input '{name}' has no declared shape.", tensor=name)
        shape: list[int] = []
        for i, dim in enumerate(ttype.shape.dim):
            size = _static_dim(dim)
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


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
        raise InvalidModel(f"ONNX shape inference fails on the model: {_first_line(exc)}.") from exc


def _is_static(value: onnx.ValueInfoProto) -> bool:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return False
    return all(_static_dim(d) is not None for d in value.type.tensor_type.shape.dim)


def _fix_outputs(model: onnx.ModelProto, inferred: onnx.ModelProto) -> tuple[list[TensorSpec], bool]:
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
            size = _static_dim(dim)
            if size is None:
                raise InvalidModel(
                    f"Output '{name}' has dimension {i} that is not fixed once batch dimensions are 1.",
                    tensor=name,
                    dim=i,
                )
            shape.append(size)
        dtype = _dtype_name(ttype.elem_type)
        if dtype is None:
            type_name = onnx.TensorProto.DataType.Name(ttype.elem_type)
            raise InvalidModel(
                f"Output '{name}' has element type {type_name}; only numeric tensors are supported.",
                tensor=name,
            )
        if not _is_static(out) or out.type.tensor_type.elem_type != ttype.elem_type:
            changed = True
        out.type.CopyFrom(inf.type)
        specs.append(TensorSpec(name, tuple(shape), dtype))
    if not specs:
        raise InvalidModel("The model has no outputs.")
    return specs, changed


def _drop_dynamic_value_info(model: onnx.ModelProto) -> bool:
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


def _add_default_strides(model: onnx.ModelProto, inferred: onnx.ModelProto) -> bool:
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


def _is_classifier(model: onnx.ModelProto, outputs: list[TensorSpec]) -> bool:
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    tails = [producers.get(spec.name, "") for spec in outputs]
    if any(op in _CLASSIFIER_TAIL_OPS for op in tails):
        return True
    if len(outputs) != 1:
        return False
    shape = outputs[0].shape
    if len(shape) == 2 and shape[0] == 1 and shape[1] > 1:
        return True
    # a binary classifier: one probability from a Sigmoid
    return tails[0] == "Sigmoid" and outputs[0].size == 1


def _check_elements(model: onnx.ModelProto, inferred: onnx.ModelProto, limit: int) -> None:
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


def _check(path: Path, *, max_bytes: int, batch_dim_ok: bool, max_tensor_elements: int) -> _Checked:
    data = _read(path, max_bytes)
    model = _parse(data)
    opset = _opset(model)
    _run_checker(model)
    normalized = onnx.ModelProto()
    normalized.CopyFrom(model)
    inputs, batched = _fix_inputs(normalized, batch_dim_ok)
    rewritten = rewrite_ml_ops(normalized)  # the ai.onnx.ml nodes that are exact tensor arithmetic
    _check_operators(normalized, domains_only=True)
    dropped = _drop_dynamic_value_info(normalized)
    for out in normalized.graph.output:  # let inference recompute what the batch fix changes
        if out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
            for dim in out.type.tensor_type.shape.dim:
                if _static_dim(dim) is None:
                    dim.Clear()
    # shapes are static now: fold shape arithmetic and constants, then check what is left on the data path
    before = [(n.op_type, tuple(n.input)) for n in normalized.graph.node]
    try:
        normalized = fold_constants(normalized) if foldable(normalized) else normalized
    except InvalidModel:  # onnxruntime cannot load it: an unsupported operator is the more useful answer
        _check_operators(normalized)
        raise
    folded = before != [(n.op_type, tuple(n.input)) for n in normalized.graph.node]
    operators = _check_operators(normalized)
    inferred = _infer(normalized)
    _check_elements(normalized, inferred, max_tensor_elements)
    outputs, outputs_changed = _fix_outputs(normalized, inferred)
    strides_added = _add_default_strides(normalized, inferred)
    info = ModelInfo(
        path=path,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ir_version=model.ir_version,
        opset=opset,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        operators=operators,
        is_classifier=_is_classifier(model, outputs),
        batch_inputs=tuple(batched),
        needs_normalization=bool(batched) or dropped or outputs_changed or strides_added or folded or rewritten,
        producer=model.producer_name,
    )
    return _Checked(info, normalized)
