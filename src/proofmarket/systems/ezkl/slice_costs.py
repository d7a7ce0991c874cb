"""What each slice of a model costs, measured with EZKL, and how many slices fit the node's budget
(``models/slicing.py`` plans on these costs; ``compile --slices auto`` and ``--max-logrows K`` ask for a count).

    segments   each stretch of nodes between two adjacent candidate cuts, laid out by EZKL alone (``gen_settings``:
               its assignments at EZKL's default scale, one column), then scaled by the whole graph's own count over
               the segments' sum (each segment alone pays a rebase of its outputs, which the slice it sits in pays
               once): a slice costs its segments' rows, or its widest link's values where those are more
               (each tensor crossing a cut is committed in a column of its own)
    candidates every cut of the graph while there are at most ``MAX_MEASURED`` segments; past that, the cuts that
               balance the graph's work into that many (a deep model keeps its dry run in about a minute), and every
               cut inside a segment ``HEAVY`` times the mean (work misjudges a nonlinearity's rescales: a GPT-2 GELU)
    fitting    the largest circuit (2^L rows, one column, the model's lookups) whose predicted prove time,
               memory and logrows are within the budget (the node's, its logrows capped by the owner's
               ``--max-logrows``): the fewest slices are planned under its rows, and each planned slice is laid out
               again whole; the segments of one over its rows cost what its layout found (scaled by it) and the
               plan is made again, the target unchanged (a nanoGPT's slices were laid out up to 1.55x their costs:
               tightening the target for all of them cut every slice finer, below its attention's segment)

A gen_settings count is what calibration starts from: the GPT-2 block of ``bench/reach.py`` cut by ``--slices auto``
(after its first GELU product) lays its first slice out in 521,153 rows, and compile's calibrated prediction for it
was 521,153 rows, logrows 19; its MLP as one slice, 681k rows, was predicted at logrows 20: the power of two that
holds the count (``CALIBRATION_LOGROWS`` more). ``compile`` itself checks every slice's calibrated prediction against
the budget.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from proofmarket.core.budget import Budget
from proofmarket.core.errors import ModelOverBudget
from proofmarket.models import slicing
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.predict import FLOOR_RESERVED, MAX_LOGROWS, PREDICT_CANDIDATE, from_settings

MAX_MEASURED = 48  # segments laid out by EZKL for one plan
CALIBRATION_LOGROWS = 0  # logrows calibration adds over the power of two that holds gen_settings' rows
MAX_REPLANS = 6
HEAVY = 3.0  # a candidate segment over this many times the mean is measured again at every cut inside it
Progress = Callable[[str], None]


def _layout(model: onnx.ModelProto, plan: slicing.SlicePlan, k: int, work: Path) -> dict[str, Any]:
    """EZKL's settings for slice ``k`` of ``plan`` laid out alone: input public, output committed (the last:
    public)."""
    path, settings = work / "laid.onnx", work / "settings.json"
    onnx.save(slicing.extract(model, plan, k), str(path))
    ra = ezkl_calls.run_args(input_visibility="public", param_visibility="fixed", decomp_base=PREDICT_CANDIDATE[0],
                             decomp_legs=PREDICT_CANDIDATE[1], num_inner_cols=1,
                             output_visibility="public" if k == plan.count - 1 else "committed")
    ezkl_calls.gen_settings(path, settings, ra)
    return dict(json.loads(settings.read_text()))


def _rows(meta: dict[str, Any]) -> int:
    return int(meta.get("total_assignments") or meta.get("num_rows") or 0)


def _lookups(meta: dict[str, Any]) -> set[str]:
    return {json.dumps(x, sort_keys=True) for x in [*(meta.get("required_lookups") or []),
                                                    *(meta.get("required_range_checks") or [])]}


def candidates(model: onnx.ModelProto, found: list[slicing.Cut]) -> tuple[slicing.Cut, ...]:
    """The cuts a plan starts from: all of the graph's (``found``), or the ``MAX_MEASURED - 1`` that balance its
    work."""
    if len(found) < MAX_MEASURED:
        return tuple(found)
    return slicing.plan(model, MAX_MEASURED).cuts


def measured_costs(model: onnx.ModelProto, work: Path, progress: Progress = lambda _: None) -> tuple[
        slicing.Costs, int]:
    """Each segment's rows as EZKL lays it out, scaled to the whole graph's count, and each link's column rows;
    and the number of distinct lookups and range checks the model needs (every slice's at most). A segment of the
    candidates much heavier than the rest (work misjudges a nonlinearity's rescales) is measured again at every cut
    inside it, its parts scaled to its own count."""
    found, total = slicing.cuts(model)
    work.mkdir(parents=True, exist_ok=True)
    lookups: set[str] = set()

    def laid(cuts: list[slicing.Cut], only: range | None = None) -> list[int]:
        plan = slicing.SlicePlan(tuple(cuts), total, len(model.graph.node))
        rows = []
        for k in only or range(plan.count):
            meta = _layout(model, plan, k, work)
            rows.append(_rows(meta))
            lookups.update(_lookups(meta))
        return rows

    picked = list(candidates(model, found))
    progress(f"slicing: laying out {len(picked) + 1} stretches of the graph with EZKL to weigh them")
    coarse = laid(picked)
    heavy = HEAVY * sum(coarse) / len(coarse)
    edges = [0, *(c.index for c in picked), len(model.graph.node)]
    cuts: list[slicing.Cut] = []
    segments: list[float] = []
    for k, rows in enumerate(coarse):
        inside = [c for c in found if edges[k] < c.index < edges[k + 1]]
        if rows > heavy and inside:
            parts = laid([*picked[:k], *inside, *picked[k:]], range(k, k + len(inside) + 1))
            segments.extend(p * rows / max(1, sum(parts)) for p in parts)
            cuts.extend(inside)
        else:
            segments.append(float(rows))
        if k < len(picked):
            cuts.append(picked[k])
    whole = _rows(_layout(model, slicing.SlicePlan((), total, len(model.graph.node)), 0, work))
    scale = min(1.0, whole / max(1, sum(coarse)))
    return (slicing.Costs(tuple(cuts), tuple(r * scale for r in segments),
                          tuple(float(c.widest) for c in cuts), total), len(lookups))


def fitting_logrows(budget: Budget, lookups: int) -> int:
    """The largest logrows of a circuit (one column, ``lookups`` lookups, a hash: a private input's) whose
    prediction (``CALIBRATION_LOGROWS`` up) is within the budget's prove time and memory, and itself within its
    logrows."""
    fits = 1
    for logrows in range(1, min(budget.max_logrows, MAX_LOGROWS) + 1):
        calibrated = logrows + CALIBRATION_LOGROWS
        predicted = from_settings({"run_args": {"logrows": calibrated, "num_inner_cols": 1},
                                   "required_lookups": [0] * lookups, "module_sizes": {"poseidon": [1]},
                                   "num_rows": 2 ** calibrated})
        if predicted.prove_s > budget.max_prove_s or predicted.peak_rss_mb > budget.max_memory_mb:
            break
        fits = logrows
    return fits


_MEASURED: dict[str, tuple[slicing.Costs, int]] = {}  # a model's measured costs by its bytes: the last few
MEASURED_KEPT = 4
_MEASURED_LOCK = threading.Lock()


def _key(model: onnx.ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def _measured(model: onnx.ModelProto, key: str, work: Path, progress: Progress) -> tuple[slicing.Costs, int]:
    """``measured_costs`` of ``model`` (whose ``_key`` is ``key``), once per model in this process (``compile
    --slices auto`` counts the slices, then compiles that many: one measurement, with the corrections ``planned``
    made to it)."""
    with _MEASURED_LOCK:
        known = _MEASURED.get(key)
    if known is not None:
        return known
    measured = measured_costs(model, work, progress)  # outside the lock: two compiles measure side by side
    _remember(key, measured)
    return measured


def _remember(key: str, measured: tuple[slicing.Costs, int]) -> None:
    with _MEASURED_LOCK:
        _MEASURED.pop(key, None)
        while len(_MEASURED) >= MEASURED_KEPT:
            _MEASURED.pop(next(iter(_MEASURED)))
        _MEASURED[key] = measured


def _bounds(costs: slicing.Costs, plan: slicing.SlicePlan) -> list[int]:
    """Where each slice of ``plan`` starts among ``costs``' segments (and where the last ends)."""
    return [0, *(costs.cuts.index(c) + 1 for c in plan.cuts), len(costs.cuts) + 1]


def corrected(costs: slicing.Costs, plan: slicing.SlicePlan, laid: list[int], target: float) -> slicing.Costs:
    """``costs`` with the segments of each slice of ``plan`` that EZKL laid out over ``target`` scaled by how far
    the costs misjudged that slice (its laid rows over its planned cost): the planner splits it next time, and the
    slices that fit keep their costs (a global tightening would cut every slice finer, down past the graph's
    smallest segments)."""
    bounds = _bounds(costs, plan)
    segments = list(costs.segments)
    for k, rows in enumerate(laid):
        if rows > target and plan.costs[k] > 0:
            for s in range(bounds[k], bounds[k + 1]):
                segments[s] *= rows / plan.costs[k]
    return replace(costs, segments=tuple(segments))


def planned(model: onnx.ModelProto, slices: int | None, budget: Budget | None, work: Path,
            progress: Progress = lambda _: None) -> slicing.SlicePlan:
    """``slices`` slices balanced on the measured costs; None: the fewest whose circuits fit ``fitting_logrows``,
    each planned slice laid out again whole and the costs of one over the target corrected by its layout, then the
    plan made again. A slice with no cut inside it over the target: the model does not fit."""
    work.mkdir(parents=True, exist_ok=True)
    key = _key(model)  # the model's bytes hashed once: the costs learnt below are kept under it
    costs, lookups = _measured(model, key, work / "segments", progress)
    budget = budget or Budget(MAX_LOGROWS, math.inf, math.inf)
    logrows = fitting_logrows(budget, lookups)
    target = float(2 ** logrows - FLOOR_RESERVED)
    if slices is None:
        progress(f"slicing: the fewest slices of at most ~2^{logrows} rows each (the budget: logrows "
                 f"{budget.max_logrows}, prove {budget.max_prove_s:,.0f} s, memory {budget.max_memory_mb:,.0f} MB; "
                 f"{lookups} lookup(s))")
    resized = 0
    while True:
        if slices is not None:
            return slicing.plan(model, slices, costs)
        plan = slicing.fewest(model, target, costs)
        laid = [max([_rows(_layout(model, plan, k, work)), *_link_columns(plan, k)]) for k in range(plan.count)]
        over = [k for k, rows in enumerate(laid) if rows > target]
        if not over or resized == MAX_REPLANS:
            return plan
        bounds = _bounds(costs, plan)
        whole = [k for k in over if bounds[k + 1] - bounds[k] == 1]  # no cut inside it
        if whole:
            k = max(whole, key=lambda i: laid[i])
            raise ModelOverBudget(
                f"the graph has no places to cut it into slices of at most ~2^{logrows} rows (the budget): "
                f"its slice {k + 1} of {plan.count}, between the closest cuts, needs ~{laid[k]:,} rows as EZKL "
                f"lays it out (its own, or a link's column: {_crossing(plan, k)}); make the model smaller, or raise "
                "PROOFMARKET_MAX_LOGROWS / PROOFMARKET_MAX_PROVE_S / PROOFMARKET_MAX_PROVE_MEMORY_MB",
                over=[f"~{laid[k]:,} rows > {target:,.0f}"], slices=plan.count)
        progress(f"slicing: {len(over)} of {plan.count} slices laid out whole need more rows than planned (up to "
                 f"{max(laid[k] / plan.costs[k] for k in over):.2f}x): planning again")
        costs = corrected(costs, plan, laid, target)
        resized += 1
        _remember(key, (costs, lookups))  # a count asked for next plans on what was learnt here


def _ends(plan: slicing.SlicePlan, k: int) -> list[slicing.Cut | None]:
    return [plan.cuts[k - 1] if k else None, plan.cuts[k] if k < len(plan.cuts) else None]


def _link_columns(plan: slicing.SlicePlan, k: int) -> list[int]:
    """The rows of slice ``k``'s link columns (its widest tensor in, and out)."""
    return [c.widest for c in _ends(plan, k) if c]


def _crossing(plan: slicing.SlicePlan, k: int) -> str:
    ends = _ends(plan, k)
    said = [f"a tensor of {c.widest:,} values {side}" for c, side in zip(ends, ("in", "out"), strict=True) if c]
    return ", ".join(said) or "no links"
