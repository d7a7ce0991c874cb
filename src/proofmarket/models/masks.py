"""An attention mask's value fitted to the model's data, at compile.

The model check writes a mask's constant (``-inf``, the float's lowest, ``-1e9``) as ``±INFINITY_AS`` (``rewrites.py``)
and names it in the model's metadata. That value also sets the rows of the circuit's range checks: -100 at the scale
2^10 is a range of ~205k values, a 6-token attention head's circuit 2^18 rows where its computation is 2^15. With the
samples and the input domain's covering points in hand, the compile writes each mask as ±M instead, M = 2 x the
largest |value| the masks meet (the scores they replace or are added to) + ``MARGIN``: a masked position then stands
at least ``MARGIN`` below every real one of its row (exp(-20): 2e-9 of its weight), for ``masked_fill`` (-M against
scores over -L) and for an added mask (a score under L minus M against a real one over -L) alike. The fitted model's
answers on those points must be the ±100 model's (to ``TOLERANCE`` of their size), else ±100 stays; a mask met by
anything but ``Where`` or ``Add`` keeps ±100 too. The fitted model is what is committed and proven, and the compile's
accuracy check runs on it.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from proofmarket.models.probe import probe, same_answers, save_model
from proofmarket.models.rewrites import INFINITY_AS, MASKS_KEY, name_masks

MARGIN = 20.0  # how far under every real score of its row a masked one stands
TOLERANCE = 1e-5  # the fitted model's answers within this x max(1, |answer|) of the ±100 model's


def fit_masks(normalized: Path, points: Sequence[Sequence[np.ndarray]]) -> str | None:
    """Rewrite the masks named in ``normalized``'s metadata to ±M fitted on ``points`` (each the model's inputs, in
    order), in place; the note to say, or None (no mask, or ±100 kept). The metadata entry is dropped either way: a
    slice cut from this model is not fitted again."""
    model = onnx.load(str(normalized))
    names = next((p.value for p in model.metadata_props if p.key == MASKS_KEY), "")
    if not names:
        return None
    masks = set(names.split(","))
    name_masks(model, [])
    met = _met(model, masks)
    fitted = None if met is None or not points else _fitted(model, masks, met, points, normalized.parent)
    save_model(fitted[0] if fitted else model, normalized)
    if fitted is None:
        return None
    return (f"attention masks as ±{fitted[1]:g}, not ±{INFINITY_AS:g}: 2 x the largest score they meet on the "
            f"samples and the domain's points ({fitted[2]:.3g}) + {MARGIN:g}, the same answers there")


def _met(model: onnx.ModelProto, masks: set[str]) -> list[str] | None:
    """The tensors the masks meet (a ``Where``'s other branch, an ``Add``'s other term); None when one is used
    otherwise."""
    met: list[str] = []
    for node in model.graph.node:
        used = [x for x in node.input if x in masks]
        if not used:
            continue
        others = [x for x in (node.input[1:] if node.op_type == "Where" else node.input) if x and x not in masks]
        if node.op_type not in ("Where", "Add") or (node.op_type == "Where" and node.input[0] in masks) or not others:
            return None
        met += others
    return met


def _fitted(model: onnx.ModelProto, masks: set[str], met: list[str], points: Sequence[Sequence[np.ndarray]],
            work: Path) -> tuple[onnx.ModelProto, float, float] | None:
    types = {i.name: i.data_type for i in model.graph.initializer}
    if not masks <= types.keys():  # a mask no longer a constant of the graph: left as it is
        return None
    elem = types[next(iter(masks))]
    outputs = len(model.graph.output)
    with tempfile.TemporaryDirectory(prefix="proofmarket-masks-", dir=work) as tmp:
        runs = probe(model, list(dict.fromkeys(met)), elem, points, Path(tmp))
        largest = max(float(np.max(np.abs(np.nan_to_num(r, posinf=0, neginf=0)), initial=0))
                      for run in runs for r in run[outputs:])
        value = float(math.ceil(2 * largest + MARGIN))
        if value >= INFINITY_AS:
            return None
        fitted = onnx.ModelProto()
        fitted.CopyFrom(model)
        for index, init in enumerate(fitted.graph.initializer):
            if init.name in masks:
                array = numpy_helper.to_array(init)
                array = np.where(np.abs(array) == INFINITY_AS, np.sign(array) * value, array).astype(array.dtype)
                fitted.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, init.name))
        if not same_answers(fitted, points, [run[:outputs] for run in runs], TOLERANCE, Path(tmp)):
            return None
    return fitted, value, largest
