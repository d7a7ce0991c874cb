"""Plain (unproven) inference with onnxruntime on the CPU."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from proofmarket.core.errors import InputShapeError, InvalidModel
from proofmarket.models.graph import first_line

if TYPE_CHECKING:  # onnxruntime loads when a model first runs (a proof alone never runs it)
    import onnxruntime as ort

_CACHE_SIZE = 16
_sessions: OrderedDict[tuple[str, int, int], ort.InferenceSession] = OrderedDict()
_lock = threading.Lock()

# onnxruntime's element type strings -> numpy dtypes (inputs proofmarket accepts are numeric)
_ORT_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def _session(path: Path) -> ort.InferenceSession:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise InvalidModel(f"There is no model file at {path}.", path=str(path)) from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _lock:
        session = _sessions.get(key)
        if session is not None:
            _sessions.move_to_end(key)
            return session
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped pybind exceptions
        raise InvalidModel(f"onnxruntime cannot load the model: {first_line(exc)}.") from exc
    with _lock:
        for old in [k for k in _sessions if k[0] == key[0]]:  # stale versions of this file
            del _sessions[old]
        _sessions[key] = session
        while len(_sessions) > _CACHE_SIZE:
            _sessions.popitem(last=False)
    return session


def run_onnx(model_path: str | os.PathLike[str], arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the model on one set of inputs (in the model's input order); return its outputs.

    Arrays are cast to each input's declared element type. Load failures raise
    :class:`~proofmarket.core.errors.InvalidModel`; wrong input count, shape or type raise
    :class:`~proofmarket.core.errors.InputShapeError`; other run-time failures raise ``InvalidModel``.
    """
    session = _session(Path(model_path))
    declared = session.get_inputs()
    if len(arrays) != len(declared):
        raise InputShapeError(
            f"The model takes {len(declared)} input(s) but {len(arrays)} were given.",
            expected=len(declared),
            got=len(arrays),
        )
    feed: dict[str, np.ndarray] = {}
    for meta, array in zip(declared, arrays, strict=True):
        dtype = _ORT_TYPES.get(meta.type)
        if dtype is None:
            raise InvalidModel(f"Input '{meta.name}' has element type {meta.type}, which is not supported.")
        feed[meta.name] = np.ascontiguousarray(array, dtype=dtype)
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    try:
        outputs = session.run(None, feed)
    except InvalidArgument as exc:
        raise InputShapeError(f"onnxruntime refused the inputs: {first_line(exc)}.") from exc
    except Exception as exc:  # Fail, RuntimeException, ... from inside the graph
        raise InvalidModel(f"onnxruntime failed while running the model: {first_line(exc)}.") from exc
    return [np.asarray(o) for o in outputs]


def clear_session_cache() -> None:
    """Forget cached onnxruntime sessions (tests, or after replacing files in place)."""
    with _lock:
        _sessions.clear()
