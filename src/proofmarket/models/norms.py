"""A LayerNormalization over small activations, scaled into range at compile.

A circuit computes LayerNorm's variance in fixed point: mean((x - mean x)^2) rounded to a step of 2^-scale. Activations
of std 0.028 (a freshly initialised GPT-2's embeddings, std 0.02 each) have a variance of 0.0008, three steps at 2^-12:
in EZKL the normalised output was 0.25 off (of a range of 6) at scale 12, and Hugging Face's GPT-2 and a nanoGPT
met no accuracy bound at any scale. LayerNorm(x) is LayerNorm(c x) with epsilon c^2 epsilon, exactly, so the compile
writes ``Mul(x, c)`` before each ``LayerNormalization`` whose input's smallest row std on the samples and the domain's
covering points is under ``TARGET_STD``: c the power of two that brings it to ``TARGET_STD`` or over, at most
``MAX_FACTOR``, and small enough that c |x| stays under ``MAX_VALUE``. A power of two is exact at every scale. The
rewritten model's answers on those points must be the model's (to ``TOLERANCE`` of their size), else it is left as it
was. (The same model at scale 10: 0.0015 off against a bound of 0.0019, where it was 0.086 at scale 11.)
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from proofmarket.models.masks import save_model
from proofmarket.models.runtime import run_onnx

TARGET_STD = 0.25  # a row's std brought at least this far (its variance then spans 64 steps of 2^-10 or more)
MAX_FACTOR = 256.0
MAX_VALUE = 64.0  # c x stays under this in magnitude (the circuit's range checks cover it)
FLAT_STD = 1e-6  # a row this flat (a constant, padding) sets no factor: its normalised values are its bias
TOLERANCE = 1e-4  # the rewritten model's answers within this x max(1, |answer|) of the model's


def fit_norms(normalized: Path, points: Sequence[Sequence[np.ndarray]]) -> str | None:
    """Scale the inputs of ``normalized``'s LayerNormalizations whose rows are small on ``points`` (each the model's
    inputs, in order), in place; the note to say, or None (none scaled)."""
    model = onnx.load(str(normalized))
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")]
    if not norms or not points:
        return None
    outputs = len(model.graph.output)
    with tempfile.TemporaryDirectory(prefix="proofmarket-norms-", dir=normalized.parent) as tmp:
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        read = list(dict.fromkeys(n.input[0] for n in norms))  # one tensor may feed several
        probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in read)
        save_model(probe, Path(tmp) / "probe.onnx")
        runs = [run_onnx(Path(tmp) / "probe.onnx", list(p)) for p in points]
        factors = [_factor(node, [run[outputs + read.index(node.input[0])] for run in runs]) for node in norms]
        if all(f <= 1 for f in factors):
            return None
        scaled = _scaled(model, norms, factors)
        save_model(scaled, Path(tmp) / "scaled.onnx")
        for point, run in zip(points, runs, strict=True):
            for got, want in zip(run_onnx(Path(tmp) / "scaled.onnx", list(point)), run[:outputs], strict=True):
                limit = TOLERANCE * max(1.0, float(np.max(np.abs(want), initial=0)))
                if float(np.max(np.abs(np.asarray(got, np.float64) - want), initial=0)) > limit:
                    return None
    save_model(scaled, normalized)
    used = sorted({int(f) for f in factors if f > 1})
    count = sum(1 for f in factors if f > 1)
    return (f"LayerNorm inputs scaled by {', '.join(map(str, used))} ({count} of {len(norms)}: their rows' std was "
            f"under {TARGET_STD:g} on the samples and the domain's points; the same answers, a variance the "
            "circuit's fixed point holds)")


def _factor(node: onnx.NodeProto, values: list[np.ndarray]) -> float:
    """The power of two this LayerNormalization's input is scaled by (1: none)."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
    stds, peak = [], 0.0
    for value in values:
        x = np.asarray(value, np.float64)
        if x.ndim == 0 or not np.all(np.isfinite(x)):
            return 1.0
        first = axis % x.ndim
        rows = x.reshape(int(np.prod(x.shape[:first], dtype=np.int64)), -1)
        stds.append(rows.std(axis=1))
        peak = max(peak, float(np.max(np.abs(x), initial=0)))
    std = np.concatenate(stds)
    std = std[std > FLAT_STD]
    if not std.size or float(std.min()) >= TARGET_STD or peak == 0:
        return 1.0
    wanted = 2.0 ** math.ceil(math.log2(TARGET_STD / float(std.min())))
    allowed = 2.0 ** math.floor(math.log2(MAX_VALUE / peak))
    return max(1.0, min(wanted, MAX_FACTOR, allowed))


def _scaled(model: onnx.ModelProto, norms: list[onnx.NodeProto], factors: list[float]) -> onnx.ModelProto:
    """The model with ``Mul(x, c)`` before each scaled LayerNormalization and its epsilon times c^2."""
    scaled = onnx.ModelProto()
    scaled.CopyFrom(model)
    by_output = {n.output[0]: f for n, f in zip(norms, factors, strict=True) if f > 1}
    rebuilt: list[onnx.NodeProto] = []
    for index, node in enumerate(scaled.graph.node):
        factor = by_output.get(node.output[0]) if node.op_type == "LayerNormalization" else None
        if factor is not None:
            name = f"proofmarket_norm_{index}"
            scaled.graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), f"{name}_factor"))
            rebuilt.append(helper.make_node("Mul", [node.input[0], f"{name}_factor"], [f"{name}_scaled"],
                                            name=f"{name}_mul"))
            node.input[0] = f"{name}_scaled"
            epsilon = next((a for a in node.attribute if a.name == "epsilon"), None)
            if epsilon is None:
                node.attribute.append(helper.make_attribute("epsilon", 1e-5 * factor * factor))  # ONNX's default
            else:
                epsilon.f = epsilon.f * factor * factor
        rebuilt.append(node)
    del scaled.graph.node[:]
    scaled.graph.node.extend(rebuilt)
    return scaled
