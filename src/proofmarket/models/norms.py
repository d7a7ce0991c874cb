"""A LayerNorm or RMSNorm over small activations, scaled into range at compile.

A circuit computes LayerNorm's variance in fixed point: mean((x - mean x)^2) rounded to a step of 2^-scale. Activations
of std 0.028 (a freshly initialised GPT-2's embeddings, std 0.02 each) have a variance of 0.0008, three steps at 2^-12:
in EZKL the normalised output was 0.25 off (of a range of 6) at scale 12, and Hugging Face's GPT-2 met no accuracy
bound at any scale. LayerNorm(x) is LayerNorm(c x) with epsilon c^2 epsilon, exactly, so the compile
writes ``Mul(x, c)`` before each ``LayerNormalization`` whose input's smallest row std on the samples and the domain's
covering points is under ``TARGET_STD``: c the power of two that brings it to ``TARGET_STD`` or over, at most
``MAX_FACTOR``, and small enough that c |x| stays under ``MAX_VALUE``. A power of two is exact at every scale. The
rewritten model's answers on those points must be the model's (to ``TOLERANCE`` of their size), else it is left as it
was. An RMSNorm written out (LLaMA's: ``x * Reciprocal(Sqrt(ReduceMean(Pow(x, 2)) + eps))``, or ``Div`` by the
``Sqrt``) is the same: its x scaled where both the ``Pow`` and the product read it, its eps by c^2, its rows' root mean
square the measure.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from proofmarket.models.graph import readers
from proofmarket.models.probe import probe, same_answers, save_model

TARGET_STD = 0.25  # a row's std brought at least this far (its variance then spans 64 steps of 2^-10 or more)
MAX_FACTOR = 256.0
MAX_VALUE = 64.0  # c x stays under this in magnitude (the circuit's range checks cover it)
FLAT_STD = 1e-6  # a row this flat (a constant, padding) sets no factor: its normalised values are its bias
TOLERANCE = 1e-4  # the rewritten model's answers within this x max(1, |answer|) of the model's


@dataclass
class _Site:
    """One normalisation: the tensor ``x`` it reads, the nodes that read ``x`` (their input index), the node whose
    epsilon goes with it (a LayerNormalization's attribute, an RMSNorm's ``Add``'s constant: its input index), the
    axis its rows start at, and whether their root mean square (RMSNorm) or std (LayerNorm) is measured."""

    x: str
    readers: list[tuple[onnx.NodeProto, int]]
    epsilon: tuple[onnx.NodeProto, int | None]
    axis: int
    rms: bool


def fit_norms(normalized: Path, points: Sequence[Sequence[np.ndarray]]) -> str | None:
    """Scale the inputs of ``normalized``'s LayerNorms and RMSNorms whose rows are small on ``points`` (each the
    model's inputs, in order), in place; the note to say, or None (none scaled)."""
    model = onnx.load(str(normalized))
    sites = _layer_norms(model) + _rms_norms(model)
    if not sites or not points:
        return None
    outputs = len(model.graph.output)
    with tempfile.TemporaryDirectory(prefix="proofmarket-norms-", dir=normalized.parent) as tmp:
        read = list(dict.fromkeys(site.x for site in sites))  # one tensor may feed several
        runs = probe(model, read, TensorProto.FLOAT, points, Path(tmp))
        factors = [_factor(site, [run[outputs + read.index(site.x)] for run in runs]) for site in sites]
        if all(f <= 1 for f in factors):
            return None
        _scale(model, sites, factors)
        if not same_answers(model, points, [run[:outputs] for run in runs], TOLERANCE, Path(tmp)):
            return None
    save_model(model, normalized)
    used = sorted({int(f) for f in factors if f > 1})
    count = sum(1 for f in factors if f > 1)
    return (f"LayerNorm/RMSNorm inputs scaled by {', '.join(map(str, used))} ({count} of {len(sites)}: their rows' "
            f"std or root mean square was under {TARGET_STD:g} on the samples and the domain's points; the same "
            "answers, a variance the circuit's fixed point holds)")


def _layer_norms(model: onnx.ModelProto) -> list[_Site]:
    return [_Site(n.input[0], [(n, 0)], (n, None), next((a.i for a in n.attribute if a.name == "axis"), -1), False)
            for n in model.graph.node if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")]


def _rms_norms(model: onnx.ModelProto) -> list[_Site]:
    """``x * Reciprocal(Sqrt(ReduceMean(Pow(x, 2), last axis) + eps))`` (or ``x / Sqrt(...)``), every step read by the
    next alone."""
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = readers(graph)

    def only(name: str, op: str) -> onnx.NodeProto | None:
        readers = consumers.get(name, [])
        return readers[0] if len(readers) == 1 and readers[0].op_type == op else None

    def scalar(name: str) -> float | None:
        value = consts.get(name)
        return float(value) if value is not None and value.size == 1 else None

    sites = []
    for power in graph.node:
        if power.op_type != "Pow" or scalar(power.input[1]) != 2.0:
            continue
        x = power.input[0]
        mean = only(power.output[0], "ReduceMean")
        if mean is None or not _last_axis(mean, consts):
            continue
        add = only(mean.output[0], "Add")
        if add is None:
            continue
        eps = 1 if add.input[0] == mean.output[0] else 0
        root = only(add.output[0], "Sqrt") if scalar(add.input[eps]) is not None else None
        if root is None:
            continue
        inverse = only(root.output[0], "Reciprocal")
        tail = only(inverse.output[0], "Mul") if inverse is not None else only(root.output[0], "Div")
        if tail is None or x not in tail.input or (tail.op_type == "Div" and tail.input[0] != x):
            continue
        sites.append(_Site(x, [(power, 0), (tail, list(tail.input).index(x))], (add, eps), -1, True))
    return sites


def _last_axis(mean: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
    """A ReduceMean over the last axis alone (its axes as an attribute, or as a constant input: opset 18)."""
    axes = next((list(a.ints) for a in mean.attribute if a.name == "axes"), None)
    if axes is None and len(mean.input) > 1 and mean.input[1] in consts:
        axes = [int(v) for v in np.ravel(consts[mean.input[1]])]
    return axes == [-1]


def _factor(site: _Site, values: list[np.ndarray]) -> float:
    """The power of two this normalisation's input is scaled by (1: none)."""
    measures, peak = [], 0.0
    for value in values:
        x = np.asarray(value, np.float64)
        if x.ndim == 0 or not np.all(np.isfinite(x)):
            return 1.0
        first = site.axis % x.ndim
        rows = x.reshape(int(np.prod(x.shape[:first], dtype=np.int64)), -1)
        measures.append(np.sqrt((rows ** 2).mean(axis=1)) if site.rms else rows.std(axis=1))
        peak = max(peak, float(np.max(np.abs(x), initial=0)))
    measure = np.concatenate(measures)
    measure = measure[measure > FLAT_STD]
    if not measure.size or float(measure.min()) >= TARGET_STD or peak == 0:
        return 1.0
    wanted = 2.0 ** math.ceil(math.log2(TARGET_STD / float(measure.min())))
    allowed = 2.0 ** math.floor(math.log2(MAX_VALUE / peak))
    return max(1.0, min(wanted, MAX_FACTOR, allowed))


def _scale(model: onnx.ModelProto, sites: list[_Site], factors: list[float]) -> None:
    """In place: ``Mul(x, c)`` read by each scaled site's readers, its epsilon times c^2."""
    graph = model.graph
    taken = {t.name for t in graph.initializer} | {v for n in graph.node for v in (*n.input, *n.output, n.name)}
    base = "proofmarket_norm"
    while any(name.startswith(base) for name in taken):  # an uploaded model's own names are left alone
        base += "_"
    for index, (site, factor) in enumerate(zip(sites, factors, strict=True)):
        if factor <= 1:
            continue
        name = f"{base}_{index}"
        graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), f"{name}_factor"))
        first = min(list(graph.node).index(node) for node, _ in site.readers)
        graph.node.insert(first, helper.make_node("Mul", [site.x, f"{name}_factor"], [f"{name}_scaled"],
                                                  name=f"{name}_mul"))
        for node, slot in site.readers:
            node.input[slot] = f"{name}_scaled"
        node, eps_slot = site.epsilon
        if eps_slot is None:  # a LayerNormalization's attribute (ONNX's default 1e-5 when absent)
            attribute = next((a for a in node.attribute if a.name == "epsilon"), None)
            if attribute is None:
                node.attribute.append(helper.make_attribute("epsilon", 1e-5 * factor * factor))
            else:
                attribute.f = attribute.f * factor * factor
        else:  # an RMSNorm's Add: a constant of its own (the one it read may be shared)
            eps = float(numpy_helper.to_array(next(t for t in graph.initializer if t.name == node.input[eps_slot])))
            graph.initializer.append(numpy_helper.from_array(np.array(eps * factor * factor, np.float32),
                                                             f"{name}_epsilon"))
            node.input[eps_slot] = f"{name}_epsilon"
