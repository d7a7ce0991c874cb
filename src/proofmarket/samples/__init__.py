"""Reference models shipped with proofmarket, built by ``scripts/make_samples.py``.

For each name in :data:`SAMPLES` the package holds ``NAME.onnx`` (the model), ``NAME.samples.json``
(``{"inputs": [{"x": ...}, ...]}``, a few test-set samples for calibration), ``NAME.input.json``
(one input in EZKL's ``{"input_data": [[...]]}`` form) and ``NAME.meta.json`` (data set, labels,
test accuracy, preprocessing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from proofmarket.core.errors import UnknownModel

SAMPLES: tuple[str, ...] = ("mlp", "cnn", "logreg")

_DIR = Path(__file__).resolve().parent
_SUFFIXES = {"onnx": ".onnx", "samples": ".samples.json", "input": ".input.json", "meta": ".meta.json"}


def sample_path(name: str, kind: str = "onnx") -> Path:
    """Path of a shipped sample file: ``kind`` is "onnx", "samples", "input" or "meta"."""
    if name not in SAMPLES:
        raise UnknownModel(
            f"There is no sample model '{name}'; the samples are {', '.join(SAMPLES)}.", name=name
        )
    if kind not in _SUFFIXES:
        raise ValueError(f"unknown sample file kind {kind!r}; use one of {', '.join(_SUFFIXES)}")
    return _DIR / f"{name}{_SUFFIXES[kind]}"


def sample_meta(name: str) -> dict[str, Any]:
    """The sample's metadata (description, labels, test accuracy, preprocessing)."""
    meta: dict[str, Any] = json.loads(sample_path(name, "meta").read_text())
    return meta


__all__ = ["SAMPLES", "sample_meta", "sample_path"]
