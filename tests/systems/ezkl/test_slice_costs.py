"""What a slice costs, measured with EZKL (``systems/ezkl/slice_costs.py``), and ``--slices auto``: a link's
commitment column read off EZKL's own settings (one column per tensor, one row per value, no hashing), and an
automatic plan whose every slice, laid out again by EZKL here, fits the rows it was planned under."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proofmarket.core.budget import Budget
from proofmarket.core.errors import ModelOverBudget
from proofmarket.models import slicing
from proofmarket.systems.ezkl import ezkl_calls, slice_costs

pytestmark = pytest.mark.slow  # EZKL lays circuits out (gen_settings): no keys, no proofs


def _chain(widths: list[int]) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.3, (a, b)).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Sigmoid", [f"m{i}"], ["y" if i == len(widths) - 2 else f"s{i}"])]
        prev = f"s{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, widths[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, widths[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _laid(path: Path, tmp: Path, input_visibility: str, output_visibility: str) -> dict[str, object]:
    ra = ezkl_calls.run_args(input_visibility=input_visibility, param_visibility="fixed", decomp_base=256,
                             decomp_legs=2, num_inner_cols=1, output_visibility=output_visibility)
    ezkl_calls.gen_settings(path, tmp / "settings.json", ra)
    return dict(json.loads((tmp / "settings.json").read_text()))


@pytest.mark.parametrize("values", [64, 512, 2560])
def test_a_committed_tensor_is_one_column_of_its_values_and_hashes_nothing(values: int, tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, values])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, values])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    plain = _laid(tmp_path / "m.onnx", tmp_path, "public", "public")
    linked = _laid(tmp_path / "m.onnx", tmp_path, "committed", "committed")  # a middle slice: both sides
    hashed = _laid(tmp_path / "m.onnx", tmp_path, "hashed", "public")  # what a link was: a Poseidon hash
    assert linked["module_sizes"]["polycommit"] == [values, values]  # type: ignore[index]
    assert linked["module_sizes"]["poseidon"][0] == 0  # type: ignore[index]
    assert int(linked["num_rows"]) <= int(plain["num_rows"])  # type: ignore[call-overload]
    assert hashed["module_sizes"]["poseidon"][0] > 30 * values  # type: ignore[index]


def test_auto_slices_each_fit_the_rows_they_were_planned_under_and_no_fewer_would(tmp_path: Path) -> None:
    model = _chain([16, 96, 96, 96, 96, 8])
    onnx.save(model, str(tmp_path / "whole.onnx"))
    whole = _laid(tmp_path / "whole.onnx", tmp_path, "public", "public")
    one = math.ceil(math.log2(int(whole["total_assignments"])))  # type: ignore[call-overload]
    logrows = one - 1  # the whole model is over: slices must be cut
    plan = slice_costs.planned(model, None, Budget(logrows, math.inf, math.inf), tmp_path / "work")
    assert plan.count >= 2
    last = plan.count - 1
    for k in range(plan.count):  # laid out again here, each slice as the prover will: committed in and out
        onnx.save(slicing.extract(model, plan, k), str(tmp_path / f"s{k}.onnx"))
        meta = _laid(tmp_path / f"s{k}.onnx", tmp_path, "public" if k == 0 else "committed",
                     "public" if k == last else "committed")
        rows = max(int(meta["total_assignments"]), *meta["module_sizes"]["polycommit"])  # type: ignore
        assert rows <= 2 ** logrows, (k, rows, 2 ** logrows)
    assert slice_costs.planned(model, None, Budget(one + 1, math.inf, math.inf), tmp_path / "w2").count == 1
    with pytest.raises(ModelOverBudget, match="no places to cut it into slices"):
        slice_costs.planned(model, None, Budget(8, math.inf, math.inf), tmp_path / "w3")


def test_the_fitting_circuit_follows_the_budget() -> None:
    roomy = slice_costs.fitting_logrows(Budget(22, 1e9, 1e9), 4)
    assert roomy == 22  # logrows bind
    tight = slice_costs.fitting_logrows(Budget(22, 600.0, 16384.0), 4)
    assert tight < roomy and slice_costs.fitting_logrows(Budget(22, 60.0, 16384.0), 4) < tight


def test_counting_then_compiling_the_count_measures_the_model_once(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile --slices auto`` plans to count the slices, then plans that count again: the stretches are laid out
    once (the count's plan lays nothing out), and the count's plan is the auto plan (the same minimax over the same
    costs)."""
    model = _chain([16, 96, 96, 96, 96, 8])
    onnx.save(model, str(tmp_path / "whole.onnx"))
    whole = _laid(tmp_path / "whole.onnx", tmp_path, "public", "public")
    one = math.ceil(math.log2(int(whole["total_assignments"])))  # type: ignore[call-overload]
    monkeypatch.setattr(slice_costs, "_MEASURED", {})  # this process may have measured this model in another test
    laid: list[str] = []
    real = ezkl_calls.gen_settings

    def counted(*args: object, **kwargs: object) -> None:
        laid.append(str(args[0]))
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ezkl_calls, "gen_settings", counted)
    auto = slice_costs.planned(model, None, Budget(one - 1, math.inf, math.inf), tmp_path / "a")
    first = len(laid)
    again = slice_costs.planned(model, auto.count, Budget(one - 1, math.inf, math.inf), tmp_path / "b")
    assert first > auto.count and len(laid) == first  # the stretches not laid out again
    assert again.cuts == auto.cuts
