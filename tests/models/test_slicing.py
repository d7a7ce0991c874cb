"""Slicing a graph at single-tensor boundaries (``models/slicing.py``): where it may cut, how it balances, and that the
slices run in order compute what the whole model does (onnxruntime on both)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from proofmarket.core.errors import UsageError
from proofmarket.models import slicing

RNG = np.random.default_rng(7)


def _weights(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.normal(0, 0.5, shape).astype(np.float32), name)


def chain(widths: list[int]) -> onnx.ModelProto:
    """x -> (MatMul, Relu) per layer -> y: a cut after every Relu (and after every MatMul)."""
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        inits.append(_weights(f"w{i}", a, b))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        out = "y" if i == len(widths) - 2 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"m{i}"], [out]))
        prev = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, widths[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, widths[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def residual() -> onnx.ModelProto:
    """h = relu(x W0); r = h + relu(h W1) (h crosses beside the branch); y = r W2 + a Constant used late."""
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["a"]), helper.make_node("Relu", ["a"], ["h"]),
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.full((1, 4), 0.5, np.float32))),
        helper.make_node("MatMul", ["h", "w1"], ["b"]), helper.make_node("Relu", ["b"], ["f"]),
        helper.make_node("Add", ["h", "f"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [_weights("w0", 6, 8), _weights("w1", 8, 8), _weights("w2", 8, 4)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    source = model if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(str(source) if isinstance(source, Path) else source,
                                   providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def test_a_chain_is_cut_after_each_node_but_the_last() -> None:
    found, total = slicing.cuts(chain([8, 16, 16, 4]))
    assert [c.tensors for c in found] == [("m0",), ("r0",), ("m1",), ("r1",), ("m2",)]
    assert total == 8 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4  # multiply-adds of each MatMul, elements of each Relu


def test_a_residual_span_is_cut_by_both_its_tensors_and_constants_cross_freely() -> None:
    # inside the branch both h and the branch's tensor are live: one tensor alone crosses only before and after it
    assert [c.tensors for c in slicing.cuts(residual(), width=1)[0]] == [("a",), ("h",), ("r",), ("m",)]
    # two may cross: the residual h beside the branch, in the order they were made (the Constant node: no cut)
    assert [c.tensors for c in slicing.cuts(residual())[0]] == [("a",), ("h",), ("h", "b"), ("h", "f"), ("r",),
                                                              ("m",)]


def test_a_model_whose_input_is_read_late_has_no_cut_before_that_read() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Add", ["b", "x"], ["y"])]
    graph = helper.make_graph(nodes, "late", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert slicing.cuts(model, width=1)[0] == []
    assert [c.tensors for c in slicing.cuts(model)[0]] == [("x", "a"), ("x", "b")]  # the input crosses beside


@pytest.mark.parametrize("n", [2, 3, 4])
def test_the_plan_minimises_the_largest_slice(n: int) -> None:
    model = chain([8, 32, 16, 24, 8, 4])
    found, total = slicing.cuts(model)
    got = slicing.plan(model, n)
    assert got.count == n and sum(got.works()) == total
    # brute force over every choice of n - 1 cuts: the smallest possible largest slice
    assert max(got.costs) == min(largest(pick, total) for pick in itertools.combinations(found, n - 1))
    assert max(got.costs) == largest(got.cuts, total)


def largest(picked: tuple[slicing.Cut, ...], total: int) -> float:
    """A second count of a plan's largest slice: its nodes' work, or the tallest column a link commits a tensor in
    (its values: one row each) where that is larger."""
    ends = [(0, 0), *((c.work_before, max(math.prod(s) for s in c.shapes)) for c in picked), (total, 0)]
    return max(max(b[0] - a[0], a[1], b[1]) for a, b in itertools.pairwise(ends))


@pytest.mark.parametrize("most", [2000.0, 6000.0, 9000.0, 1e9])
def test_the_fewest_slices_under_a_cost(most: float) -> None:
    model = chain([16, 64, 64, 64, 64, 8])
    found, total = slicing.cuts(model)
    got = slicing.fewest(model, most)
    fits = [k for k in range(1, len(found) + 2)
            if any(largest(pick, total) <= most for pick in itertools.combinations(found, k - 1))]
    if fits:  # the fewest that fit, by brute force, balanced
        assert got.count == fits[0] and max(got.costs) <= most
        assert max(got.costs) == min(largest(p, total) for p in itertools.combinations(found, got.count - 1))
    else:  # none fits: as many slices as the graph has places
        assert got.count == len(found) + 1 and max(got.costs) > most


def test_a_recorded_plan_is_cut_again_at_its_places_and_a_foreign_one_is_refused() -> None:
    model = residual()
    planned = slicing.plan(model, 3)
    again = slicing.plan_at(model, [c["after_node"] for c in planned.to_json()["cuts"]])  # type: ignore[index]
    assert again.cuts == planned.cuts
    with pytest.raises(UsageError, match="no cut"):
        slicing.plan_at(model, [len(model.graph.node) + 5])


@pytest.mark.parametrize(("build", "n"), [(lambda: chain([8, 16, 16, 4]), 3), (residual, 2), (residual, 3),
                                          (residual, 6)])
def test_the_slices_in_order_compute_the_whole_model(build: object, n: int, tmp_path: Path) -> None:
    model = build()  # type: ignore[operator]
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    plan, paths = slicing.write_slices(path, n, tmp_path / "slices")
    assert plan.count == n and len(paths) == n
    x = RNG.normal(0, 1, (1, model.graph.input[0].type.tensor_type.shape.dim[1].dim_value)).astype(np.float32)
    out, between = slicing.run_chain(paths, [x])
    np.testing.assert_array_equal(out[0], run(model, x))
    assert [[a.shape for a in b] for b in between] == [list(c.shapes) for c in plan.cuts]
    for k, p in enumerate(paths):  # each slice is a model of its own: its inputs the cut's tensors, in its order
        sliced = onnx.load(str(p))
        if k:
            assert tuple(i.name.removesuffix("__carried") for i in sliced.graph.input) == plan.cuts[k - 1].tensors
        if k < plan.count - 1:
            assert len(sliced.graph.output) == len(plan.cuts[k].tensors)


def test_a_slice_reading_its_inputs_coarser_computes_the_same_outputs() -> None:
    """``read_at``: each shifted input arrives as its value times a power of two (a finer tensor's field elements
    read at a coarser scale) and the slice's outputs are the original slice's on the values, a tensor it passes
    through included; its inputs keep their places (the next slice's inputs are the cut's tensors, by position)."""
    model = residual()
    found = slicing.cuts(model)[0]
    at = [c.index for c in found if c.tensors in (("h", "b"), ("h", "f"))]
    plan = slicing.plan_at(model, at)
    middle = slicing.extract(model, plan, 1)  # h and b in; h (passed through) and f out
    shifted = slicing.read_at(middle, [2, 1])
    assert len(shifted.graph.input) == 2 and len(shifted.graph.output) == 2
    h, b = RNG.normal(0, 1, (1, 8)).astype(np.float32), RNG.normal(0, 1, (1, 8)).astype(np.float32)

    def outputs(m: onnx.ModelProto, feeds: list[np.ndarray]) -> list[np.ndarray]:
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return [np.asarray(o) for o in session.run(None, {i.name: v for i, v in
                                                          zip(session.get_inputs(), feeds, strict=True)})]

    want = outputs(middle, [h, b])
    for got, ref in zip(outputs(shifted, [h * 4, b * 2]), want, strict=True):
        np.testing.assert_array_equal(got, ref)
    unshifted = slicing.read_at(middle, [0, 0])
    for got, ref in zip(outputs(unshifted, [h, b]), want, strict=True):
        np.testing.assert_array_equal(got, ref)


def test_bad_slice_counts_are_refused() -> None:
    with pytest.raises(UsageError, match="between 1 and"):
        slicing.plan(chain([4, 4, 4]), 0)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_a_model_with_two_outputs_is_sliced_and_the_early_output_carried_to_the_end(n: int, tmp_path: Path) -> None:
    """A model output made early (a hidden state beside the logits) crosses every later cut and the last slice hands
    it out as it came: the slices in order give every output of the whole model, in its order."""
    model = chain([6, 8, 8, 3])
    model.graph.output.insert(0, helper.make_tensor_value_info("r0", TensorProto.FLOAT, [1, 8]))
    found = slicing.cuts(model)[0]
    assert [c.tensors for c in found] == [("m0",), ("r0",), ("r0", "m1"), ("r0", "r1"), ("r0", "m2")]
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    paths = slicing.write_slices(path, n, tmp_path / "slices")[1]
    x = RNG.normal(0, 1, (1, 6)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})
    got = slicing.run_chain(paths, [x])[0]
    assert len(got) == len(want) == 2
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [o.name for o in onnx.load(str(paths[-1])).graph.output] == ["r0", "y"]


def test_a_model_reading_token_ids_is_run_in_slices_on_integer_ids(tmp_path: Path) -> None:
    """ids (int64) -> Gather(embedding) -> MatMul -> Relu -> MatMul: the first slice takes the ids as integers (its
    input's declared type), and the slices in order compute what onnxruntime computes on the whole model."""
    table = numpy_helper.from_array(RNG.normal(0, 1, (12, 6)).astype(np.float32), "table")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
             helper.make_node("MatMul", ["e", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "tokens", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 3])],
                              [table, _weights("w1", 6, 8), _weights("w2", 8, 3)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "tokens.onnx"
    onnx.save(model, str(path))
    _, paths = slicing.write_slices(path, 2, tmp_path / "slices")
    ids = np.array([[0, 11, 3, 3, 7]], dtype=np.int64)
    out, _ = slicing.run_chain(paths, [ids.astype(np.float64)])  # as a sample file gives them: numbers
    whole = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    np.testing.assert_allclose(out[0], whole, rtol=1e-6)
