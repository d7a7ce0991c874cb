"""The attested system: compile (commit to a model directory), generate (sign an attested bundle), verify
(signature and hashes only) and re-execute (one prefill pass against the commitments).

    terms.py     default terms, the causal-LM library, GenerateRequest, materialise
    compile.py   compile_attested, compile_attested_onnx
    runtime.py   AttestedRuntime (loaded models, generate, infer), build_bundle
    check.py     check_bundle, reexecute
"""

from __future__ import annotations

from proofmarket.systems.attested.check import OnnxRecheck, check_bundle, reexecute
from proofmarket.systems.attested.compile import compile_attested, compile_attested_onnx
from proofmarket.systems.attested.runtime import AttestedRuntime, build_bundle
from proofmarket.systems.attested.terms import (
    DEFAULT_CHUNK,
    DEFAULT_MAX_TOKENS_CAP,
    DEFAULT_TOLERANCE,
    DEFAULT_TOPK,
    MAX_PROMPT_CHARS,
    MAX_TEMPERATURE,
    GenerateRequest,
    materialise,
)

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_MAX_TOKENS_CAP",
    "DEFAULT_TOLERANCE",
    "DEFAULT_TOPK",
    "MAX_PROMPT_CHARS",
    "MAX_TEMPERATURE",
    "AttestedRuntime",
    "GenerateRequest",
    "OnnxRecheck",
    "build_bundle",
    "check_bundle",
    "compile_attested",
    "compile_attested_onnx",
    "materialise",
    "reexecute",
]
