"""An input that indexes a table (token ids into an embedding) has the table's rows as its domain: a derived domain
is all of them at every element (whatever the samples), its points are whole numbers, a stated one outside them is
refused. Expected limits come from the tables' shapes as built here, and the points are checked against onnxruntime
running the model on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proofmarket.core.errors import UsageError
from proofmarket.models.domain import check_limits, from_samples, index_limits, integral, stated
from proofmarket.models.graph import index_limits as limits_of_model


def _token_model(path: Path, vocab: int = 10, d: int = 3, positions: int = 6, cast: bool = False) -> Path:
    """ids (int64, 1x4) -> Gather(embedding vocab x d) + Gather(positions x d along axis 0 of another table)."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.normal(size=(vocab, d)).astype(np.float32), "table")
    other = numpy_helper.from_array(rng.normal(size=(positions, d)).astype(np.float32), "other")
    nodes = []
    ids = "ids"
    if cast:
        nodes.append(helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32))
        ids = "ids32"
    nodes += [helper.make_node("Gather", ["table", ids], ["a"], axis=0),
              helper.make_node("Gather", ["other", ids], ["b"], axis=0),
              helper.make_node("Add", ["a", "b"], ["y"])]
    graph = helper.make_graph(nodes, "tokens", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, d])], [table, other])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("cast", [False, True])
def test_an_input_indexing_tables_is_limited_to_the_narrowest(tmp_path: Path, cast: bool) -> None:
    path = _token_model(tmp_path / "m.onnx", vocab=10, positions=6, cast=cast)
    assert index_limits(path) == {"ids": (0, 5)}  # the positions table has 6 rows, the vocabulary 10
    float_input = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "f",
                                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    assert limits_of_model(helper.make_model(float_input)) == {}


def test_a_derived_domain_of_token_ids_keeps_inside_the_table_and_its_points_are_whole(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = _token_model(tmp_path / "m.onnx", vocab=10, positions=10)
    samples = [[np.array([[1, 4, 8, 2]])], [np.array([[0, 9, 3, 5]])]]
    domain = from_samples(["ids"], samples, 0.5, index_limits(path))
    assert domain.low[0] == (0,) * 4 and domain.high[0] == (9,) * 4  # any of the 10 tokens at any place
    widened = from_samples(["ids"], samples, 0.5)  # without the table's rows: past them (what calibration broke on)
    assert min(widened.low[0]) < 0 and max(widened.high[0]) > 9
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    points = domain.points(integral=(True,))
    assert len(points) > 3
    for point in points:
        values = np.asarray(point[0])
        assert np.array_equal(values, np.round(values)) and values.min() >= 0 and values.max() <= 9
        session.run(None, {"ids": values.astype(np.int64).reshape(1, 4)})  # every point indexes inside the table
    # a float input's points are as before: the same covering points, not rounded
    assert domain.points() != points


def test_a_stated_domain_outside_the_table_is_refused(tmp_path: Path) -> None:
    limits = index_limits(_token_model(tmp_path / "m.onnx", vocab=10, positions=10))
    check_limits(stated("0:9", ["ids"], [4]), limits)
    with pytest.raises(UsageError, match="indexes a table of 10 rows"):
        check_limits(stated("0:10", ["ids"], [4]), limits)


def test_integer_inputs_are_named_integral() -> None:
    from proofmarket.models.spec import TensorSpec

    assert integral([TensorSpec("ids", (1, 4), "int64"), TensorSpec("x", (1, 2), "float32")]) == (True, False)


def test_ids_reshaped_before_the_table_are_still_limited_to_its_rows(tmp_path: Path) -> None:
    """Hugging Face's models flatten the token ids (a Reshape) before the embedding; a node that keeps only some of
    the ids' values (a Slice) does not carry the limit: those ids are not all indices."""
    table = numpy_helper.from_array(np.zeros((7, 2), np.float32), "table")
    shape = numpy_helper.from_array(np.array([-1], np.int64), "shape")
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    starts, ends = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "starts"), (2, "ends")))
    nodes = [helper.make_node("Reshape", ["ids", "shape"], ["flat"]),
             helper.make_node("Transpose", ["flat"], ["same"], perm=[0]),
             helper.make_node("Gather", ["table", "same"], ["y"], axis=0),
             helper.make_node("Slice", ["ids2", "starts", "ends", "axes"], ["part"]),
             helper.make_node("Gather", ["table", "part"], ["z"], axis=0)]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4]),
                                              helper.make_tensor_value_info("ids2", TensorProto.INT64, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 2])],
                              [table, shape, axes, starts, ends])
    assert limits_of_model(helper.make_model(graph)) == {"ids": (0, 6)}
