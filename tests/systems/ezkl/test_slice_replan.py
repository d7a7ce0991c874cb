"""``--slices auto`` plans again when EZKL lays a planned slice out over the rows it was planned under: the costs
of that slice are corrected by what its layout found, the target stays the budget's. (A nanoGPT's slices were laid
out up to 1.55x their costs; tightening the target for every slice instead cut the graph finer each time, below its
attention's segment, and the plan failed with a model that fits.) EZKL is replaced here by a table of each
segment's true rows, so the expected plan comes from a brute force over every partition of that table."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proofmarket.core.budget import Budget
from proofmarket.core.errors import ModelOverBudget
from proofmarket.models import slicing
from proofmarket.systems.ezkl import slice_costs
from proofmarket.systems.ezkl.predict import FLOOR_RESERVED

LOGROWS = 10
TARGET = 2 ** LOGROWS - FLOOR_RESERVED


def _chain(layers: int) -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.3, (4, 4)).astype(np.float32), f"w{i}"))
        out = "y" if i == layers - 1 else f"r{i}"
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [out])]
        prev = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _fake_ezkl(monkeypatch: pytest.MonkeyPatch, model: onnx.ModelProto, estimated: list[float],
               true_rows: list[int]) -> list[int]:
    """The planner's costs are ``estimated``; a slice laid out costs its segments' ``true_rows``. Returns the number
    of slices each layout round saw."""
    real = slicing.work_costs(model)
    assert len(real.segments) == len(estimated) == len(true_rows)
    costs = slicing.Costs(real.cuts, tuple(estimated), tuple(0.0 for _ in real.cuts), real.total_work)
    monkeypatch.setattr(slice_costs, "_MEASURED", {})
    monkeypatch.setattr(slice_costs, "measured_costs", lambda *_a, **_k: (costs, 1))
    rounds: list[int] = []

    def layout(_model: onnx.ModelProto, plan: slicing.SlicePlan, k: int, _work: Path) -> dict[str, int]:
        bounds = [0, *(real.cuts.index(c) + 1 for c in plan.cuts), len(real.cuts) + 1]
        if k == 0:
            rounds.append(plan.count)
        return {"total_assignments": sum(true_rows[bounds[k]:bounds[k + 1]])}

    monkeypatch.setattr(slice_costs, "_layout", layout)
    return rounds


def _fewest_that_fit(true_rows: list[int]) -> int:
    """The fewest contiguous slices whose true rows each fit the target: every partition tried."""
    n = len(true_rows)
    for count in range(1, n + 1):
        for inner in itertools.combinations(range(1, n), count - 1):
            bounds = [0, *inner, n]
            if all(sum(true_rows[a:b]) <= TARGET for a, b in itertools.pairwise(bounds)):
                return count
    raise AssertionError("no partition fits")


def test_a_slice_laid_out_over_its_costs_is_split_and_the_others_keep_theirs(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    model = _chain(8)
    segments = len(slicing.work_costs(model).segments)
    estimated = [300.0] * segments
    true_rows = [300] * segments
    true_rows[segments // 2] = 600  # a nonlinearity the estimate misjudges by 2x
    rounds = _fake_ezkl(monkeypatch, model, estimated, true_rows)
    plan = slice_costs.planned(model, None, Budget(LOGROWS, math.inf, math.inf), tmp_path)
    bounds = [0, *(slicing.work_costs(model).cuts.index(c) + 1 for c in plan.cuts), segments]
    laid = [sum(true_rows[a:b]) for a, b in itertools.pairwise(bounds)]
    assert max(laid) <= TARGET, laid  # every slice fits, as EZKL lays it out
    assert plan.count == _fewest_that_fit(true_rows), (plan.count, laid)  # and no fewer would
    assert len(rounds) >= 2  # it planned again after the first layout


def test_a_count_asked_after_auto_plans_on_the_corrected_costs(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """``compile --slices auto`` counts, then compiles that count: the count's plan is the one that fitted."""
    model = _chain(8)
    segments = len(slicing.work_costs(model).segments)
    true_rows = [300] * segments
    true_rows[1] = 700
    _fake_ezkl(monkeypatch, model, [300.0] * segments, true_rows)
    auto = slice_costs.planned(model, None, Budget(LOGROWS, math.inf, math.inf), tmp_path / "a")
    again = slice_costs.planned(model, auto.count, Budget(LOGROWS, math.inf, math.inf), tmp_path / "b")
    assert again.cuts == auto.cuts


def test_a_segment_laid_out_over_the_budget_alone_is_refused_with_its_rows(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    model = _chain(8)
    segments = len(slicing.work_costs(model).segments)
    true_rows = [300] * segments
    true_rows[3] = 2 * TARGET  # no cut inside it: no plan fits
    _fake_ezkl(monkeypatch, model, [300.0] * segments, true_rows)
    with pytest.raises(ModelOverBudget, match=f"needs ~{2 * TARGET:,} rows as EZKL lays it out"):
        slice_costs.planned(model, None, Budget(LOGROWS, math.inf, math.inf), tmp_path)
