"""Load, check and normalise ONNX models before they are compiled into circuits."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from proofmarket.core.errors import InvalidModel, ModelTooLarge
from proofmarket.models.fold import check_folded_sizes, fold_constants, foldable
from proofmarket.models.graph import (
    add_default_strides,
    check_elements,
    check_operators,
    classifier_evidence,
    drop_dynamic_value_info,
    fix_inputs,
    fix_outputs,
    infer_shapes,
    run_checker,
    static_dim,
)
from proofmarket.models.ml_ops import rewrite_ml_ops
from proofmarket.models.ops import DEFAULT_DOMAINS, MAX_OPSET, MIN_OPSET
from proofmarket.models.precision import to_float32
from proofmarket.models.rewrites import drop_nan_guards, finite_constants, rewrite_standard
from proofmarket.models.spec import ModelInfo

MiB = 1024 * 1024
#: Default size limit for a model file.
MAX_MODEL_BYTES = 100 * MiB
#: Default limit on the elements of any one tensor (weights, input, output, intermediate): far above what
#: a circuit can prove, low enough that a small file cannot make the compiler allocate without bound.
MAX_TENSOR_ELEMENTS = 1 << 24

_fix_inputs = fix_inputs  # systems/attested/onnx_attest.py imports it from here


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
    copy = load_model(out, max_bytes=max(max_bytes, len(data)), batch_dim_ok=False,
                      max_tensor_elements=max_tensor_elements)
    return dataclasses.replace(copy, notes=checked.info.notes)  # what the copy's making rewrote


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




def _size(n: int) -> str:
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def _check(path: Path, *, max_bytes: int, batch_dim_ok: bool, max_tensor_elements: int) -> _Checked:
    data = _read(path, max_bytes)
    model = _parse(data)
    opset = _opset(model)
    run_checker(model)
    normalized = onnx.ModelProto()
    normalized.CopyFrom(model)
    single = to_float32(normalized)  # a float64 export (scikit-learn's default) in the precision everything reads
    inputs, batched = fix_inputs(normalized, batch_dim_ok)
    rewritten = ([single] if single else []) + rewrite_ml_ops(normalized)  # ai.onnx.ml nodes as tensor arithmetic
    rewritten += rewrite_standard(normalized)  # Equal as comparisons, 8-bit MatMul in int32 (rewrites.py)
    rewritten += drop_nan_guards(normalized)  # SDPA's Where(IsNaN(x), 0, x) as x (rewrites.py)
    check_operators(normalized, domains_only=True)
    dropped = drop_dynamic_value_info(normalized)
    for out in normalized.graph.output:  # let inference recompute what the batch fix changes
        if out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
            for dim in out.type.tensor_type.shape.dim:
                if static_dim(dim) is None:
                    dim.Clear()
    # shapes are static now: fold shape arithmetic and constants, then check what is left on the data path
    before = [(n.op_type, tuple(n.input)) for n in normalized.graph.node]
    check_folded_sizes(normalized, max_tensor_elements)
    try:
        normalized = fold_constants(normalized) if foldable(normalized) else normalized
    except InvalidModel:  # onnxruntime cannot load it: an unsupported operator is the more useful answer
        check_operators(normalized)
        raise
    folded = before != [(n.op_type, tuple(n.input)) for n in normalized.graph.node]
    rewritten += finite_constants(normalized)  # an attention mask's -inf, as a finite value (rewrites.py)
    operators = check_operators(normalized)
    inferred = infer_shapes(normalized)
    check_elements(normalized, inferred, max_tensor_elements)
    outputs, outputs_changed = fix_outputs(normalized, inferred)
    strides_added = add_default_strides(normalized, inferred)
    evidence = classifier_evidence(model, outputs)
    info = ModelInfo(
        path=path,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ir_version=model.ir_version,
        opset=opset,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        operators=operators,
        is_classifier=evidence is not None,
        classifier_evidence=evidence or "",
        batch_inputs=tuple(batched),
        needs_normalization=bool(batched) or dropped or outputs_changed or strides_added or folded or bool(rewritten),
        producer=model.producer_name,
        notes=tuple(rewritten),
    )
    return _Checked(info, normalized)
