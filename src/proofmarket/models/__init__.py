"""ONNX models: load and check them, normalise them for EZKL, parse inputs, run them plainly."""

from proofmarket.models.inputs import (
    MAX_INPUT_ELEMENTS,
    MAX_SAMPLES,
    parse_inputs,
    parse_samples,
    to_ezkl_calibration,
    to_ezkl_input,
)
from proofmarket.models.loader import MAX_MODEL_BYTES, load_model, model_commitment, normalize_model
from proofmarket.models.ops import MAX_OPSET, MIN_OPSET, SUPPORTED_OPS
from proofmarket.models.runtime import clear_session_cache, run_onnx
from proofmarket.models.sample_files import read_sample_file
from proofmarket.models.spec import ModelInfo, TensorSpec

__all__ = [
    "MAX_INPUT_ELEMENTS",
    "MAX_MODEL_BYTES",
    "MAX_OPSET",
    "MAX_SAMPLES",
    "MIN_OPSET",
    "SUPPORTED_OPS",
    "ModelInfo",
    "TensorSpec",
    "clear_session_cache",
    "load_model",
    "model_commitment",
    "normalize_model",
    "parse_inputs",
    "parse_samples",
    "read_sample_file",
    "run_onnx",
    "to_ezkl_calibration",
    "to_ezkl_input",
]
