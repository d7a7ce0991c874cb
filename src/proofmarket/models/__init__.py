"""ONNX models: load and check them, normalise them for EZKL, parse inputs, run them plainly.

Each name loads its own module on first use (PEP 562): checking a call's inputs (``parse_flat``) loads neither
numpy, onnx nor onnxruntime, so that a prover (and ``proofmarket prove``) starts without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proofmarket.models.inputs import MAX_INPUT_ELEMENTS, FlatInput, parse_flat, parse_inputs
    from proofmarket.models.loader import MAX_MODEL_BYTES, load_model, model_commitment, normalize_model
    from proofmarket.models.ops import MAX_OPSET, MIN_OPSET, SUPPORTED_OPS
    from proofmarket.models.runtime import clear_session_cache, run_onnx
    from proofmarket.models.sample_files import read_sample_file
    from proofmarket.models.sample_sets import MAX_SAMPLES, parse_samples, to_ezkl_calibration, to_ezkl_input
    from proofmarket.models.spec import InputSignature, ModelInfo, TensorSpec

_WHERE = {
    "inputs": ("MAX_INPUT_ELEMENTS", "FlatInput", "parse_flat", "parse_inputs"),
    "loader": ("MAX_MODEL_BYTES", "load_model", "model_commitment", "normalize_model"),
    "ops": ("MAX_OPSET", "MIN_OPSET", "SUPPORTED_OPS"),
    "runtime": ("clear_session_cache", "run_onnx"),
    "sample_files": ("read_sample_file",),
    "sample_sets": ("MAX_SAMPLES", "parse_samples", "to_ezkl_calibration", "to_ezkl_input"),
    "spec": ("InputSignature", "ModelInfo", "TensorSpec"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "MAX_INPUT_ELEMENTS",
    "MAX_MODEL_BYTES",
    "MAX_OPSET",
    "MAX_SAMPLES",
    "MIN_OPSET",
    "SUPPORTED_OPS",
    "FlatInput",
    "InputSignature",
    "ModelInfo",
    "TensorSpec",
    "clear_session_cache",
    "load_model",
    "model_commitment",
    "normalize_model",
    "parse_flat",
    "parse_inputs",
    "parse_samples",
    "read_sample_file",
    "run_onnx",
    "to_ezkl_calibration",
    "to_ezkl_input",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'proofmarket.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"proofmarket.models.{module}"), name)
    globals()[name] = value
    return value
