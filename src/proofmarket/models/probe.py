"""What the compile's data fits (``masks.py``, ``norms.py``) share: a model run on the points with some inner
tensors read out beside its outputs, and the check that a rewritten model answers as the model did."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from proofmarket.models.runtime import run_onnx


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Written whole and atomically (a new file: ``run_onnx``'s sessions are kept by path, time and size)."""
    data = model.SerializeToString(deterministic=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def probe(model: onnx.ModelProto, names: Sequence[str], elem: int, points: Sequence[Sequence[np.ndarray]],
          folder: Path) -> list[list[np.ndarray]]:
    """``model`` run on each of ``points``: its outputs, then the tensors ``names`` (of element type ``elem``)."""
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    probed.graph.output.extend(helper.make_tensor_value_info(name, elem, None) for name in names)
    save_model(probed, folder / "probe.onnx")
    return [run_onnx(folder / "probe.onnx", list(p)) for p in points]


def same_answers(rewritten: onnx.ModelProto, points: Sequence[Sequence[np.ndarray]], answers: list[list[np.ndarray]],
                 tolerance: float, folder: Path) -> bool:
    """Whether ``rewritten`` answers each point as ``answers`` (the model's outputs there) within ``tolerance`` x
    max(1, |answer|)."""
    save_model(rewritten, folder / "rewritten.onnx")
    for point, want_all in zip(points, answers, strict=True):
        for got, want in zip(run_onnx(folder / "rewritten.onnx", list(point)), want_all, strict=True):
            limit = tolerance * max(1.0, float(np.max(np.abs(want), initial=0)))
            if float(np.max(np.abs(np.asarray(got, np.float64) - want), initial=0)) > limit:
                return False
    return True
