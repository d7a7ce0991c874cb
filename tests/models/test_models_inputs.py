"""parse_inputs / parse_samples / to_ezkl_input: both request forms and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_builders import make_model
from onnx import TensorProto, helper

from proofmarket.core.errors import InputError, InputShapeError, InputTooLarge, NonFiniteInput
from proofmarket.models import (
    ModelInfo,
    load_model,
    parse_flat,
    parse_inputs,
    parse_samples,
    to_ezkl_calibration,
    to_ezkl_input,
)

X8 = [0.5, -1.25, 2.0, 3, 0.0, -7, 1e-3, 4.5]


@pytest.fixture
def mlp(mlp_path: Path) -> ModelInfo:
    return load_model(mlp_path)


@pytest.fixture
def cnn(cnn_path: Path) -> ModelInfo:
    return load_model(cnn_path)


@pytest.fixture
def two(two_input_path: Path) -> ModelInfo:
    return load_model(two_input_path)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype == np.float32 and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_both_forms_parse_identically_mlp(mlp: ModelInfo) -> None:
    docs = [
        {"input_data": [X8]},
        {"input_data": [[X8]]},
        {"inputs": {"x": [X8]}},
        {"inputs": {"x": X8}},
        {"inputs": {"x": np.array([X8])}},
    ]
    parsed = [parse_inputs(d, mlp) for d in docs]
    for p in parsed[1:]:
        _same(parsed[0], p)
    assert parsed[0][0].shape == (1, 8)
    np.testing.assert_array_equal(parsed[0][0].ravel(), np.array(X8, np.float32))


def test_both_forms_parse_identically_4d(cnn: ModelInfo) -> None:
    img = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6) / 36
    nested = img.tolist()
    docs = [
        {"input_data": [img.ravel().tolist()]},
        {"input_data": [nested]},
        {"inputs": {"img": nested}},
        {"inputs": {"img": nested[0][0]}},  # without the leading size-1 dims
        {"inputs": {"img": img.ravel().tolist()}},
    ]
    for doc in docs:
        _same(parse_inputs(doc, cnn), [img])


def test_two_inputs_in_order_and_by_name(two: ModelInfo) -> None:
    a = [[[1, 2, 3], [4, 5, 6]]]
    b = [[0.5, 0.25, 0.125, 1]]
    by_pos = parse_inputs({"input_data": [a, b]}, two)
    by_name = parse_inputs({"inputs": {"b": b, "a": a}}, two)
    flat = parse_inputs({"input_data": [[1, 2, 3, 4, 5, 6], [0.5, 0.25, 0.125, 1]]}, two)
    _same(by_pos, by_name)
    _same(by_pos, flat)
    assert [x.shape for x in by_pos] == [(1, 2, 3), (1, 4)]


def test_round_trip_through_ezkl_form(two: ModelInfo) -> None:
    arrays = parse_inputs({"inputs": {"a": [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]], "b": [[1, 2, 3, 4]]}}, two)
    doc = to_ezkl_input(arrays)
    assert doc == json.loads(json.dumps(doc))
    assert [len(v) for v in doc["input_data"]] == [6, 4]
    _same(parse_inputs(doc, two), arrays)


def test_output_data_key_is_ignored(mlp: ModelInfo) -> None:
    _same(
        parse_inputs({"input_data": [X8], "output_data": [[1, 2, 3]]}, mlp),
        parse_inputs({"input_data": [X8]}, mlp),
    )


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_named_with_index(mlp: ModelInfo, bad: float) -> None:
    values = list(X8)
    values[5] = bad
    with pytest.raises(NonFiniteInput, match=r"Input 'x' has .* at index \[0, 5\]") as err:
        parse_inputs({"inputs": {"x": [values]}}, mlp)
    assert err.value.details == {"tensor": "x", "index": "[0, 5]"}


def test_non_finite_from_json_literals(mlp: ModelInfo) -> None:
    doc = json.loads('{"input_data": [[1, 2, NaN, 4, 5, 6, 7, 8]]}')
    with pytest.raises(NonFiniteInput, match=r"NaN at index \[0, 2\]"):
        parse_inputs(doc, mlp)


@pytest.mark.parametrize("big", [1e39, 10**400])
def test_float32_overflow_is_non_finite(mlp: ModelInfo, big: float) -> None:
    with pytest.raises(NonFiniteInput, match="Input 'x'"):
        parse_inputs({"input_data": [[big, *X8[1:]]]}, mlp)


def test_the_flat_check_gives_the_arrays_values_and_refuses_alike(cnn: ModelInfo) -> None:
    """``parse_flat`` (no numpy: a prover's check) and ``parse_inputs`` (its values as arrays) are one check."""
    shape = cnn.inputs[0].shape
    values = np.random.default_rng(7).normal(size=int(np.prod(shape))).tolist()
    values[3] = 16777217  # not a float32: rounded as numpy rounds it
    flat, = parse_flat({"input_data": [values]}, cnn)
    array, = parse_inputs({"input_data": [values]}, cnn)
    assert flat.shape == array.shape == tuple(shape) and flat.values == array.ravel().tolist()
    assert flat.values[3] == 16777216.0
    nested = np.asarray(values, dtype=np.float64).reshape(shape).tolist()
    nested[0][-1][1][2] = -(10**400)  # beyond float64: named at its index in the input's shape
    for check in (parse_flat, parse_inputs):
        with pytest.raises(NonFiniteInput) as err:
            check({"input_data": [nested]}, cnn)
        assert err.value.details["index"] == str([0, shape[1] - 1, 1, 2])


def test_too_many_elements(mlp: ModelInfo, two: ModelInfo) -> None:
    with pytest.raises(InputTooLarge, match="more than 4 values"):
        parse_inputs({"input_data": [X8]}, mlp, max_elements=4)
    with pytest.raises(InputTooLarge):
        parse_inputs({"input_data": [[0.0] * 2_000_000]}, mlp)
    # the cap is on all inputs together: 6 + 4 > 8
    with pytest.raises(InputTooLarge):
        parse_inputs({"input_data": [[0] * 6, [0] * 4]}, two, max_elements=8)
    assert len(parse_inputs({"input_data": [[0] * 6, [0] * 4]}, two, max_elements=10)) == 2


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (X8[:7], r"\[7\] \(7 values\)"),
        ([X8[:4], X8[4:]], r"\[2, 4\] \(8 values\)"),
        ([[X8]], r"\[1, 1, 8\] \(8 values\)"),
    ],
)
def test_wrong_shape_names_expected_and_got(mlp: ModelInfo, value: list[object], got: str) -> None:
    with pytest.raises(
        InputShapeError, match=rf"Input 'x' has shape {got}; the model expects \[1, 8\]"
    ) as err:
        parse_inputs({"inputs": {"x": value}}, mlp)
    assert err.value.details["expected"] == [1, 8]


def test_ragged_refused(cnn: ModelInfo) -> None:
    rows = [[0.0] * 6 for _ in range(6)]
    rows[3] = [0.0] * 5
    with pytest.raises(InputShapeError, match="ragged"):
        parse_inputs({"inputs": {"img": [[rows]]}}, cnn)


@pytest.mark.parametrize(
    ("item", "kind"),
    [(True, "a boolean"), ("1.5", "a string"), (None, "null"), ({"v": 1}, "an object"), ([1], "a list")],
)
def test_non_numbers_refused(mlp: ModelInfo, item: object, kind: str) -> None:
    values: list[object] = list(X8)
    values[3] = item
    with pytest.raises(InputError, match=rf"Input 'x' must hold only numbers; found {kind} at index \[3\]"):
        parse_inputs({"input_data": [values]}, mlp)


def test_bool_array_refused(mlp: ModelInfo) -> None:
    with pytest.raises(InputError, match="must hold numbers"):
        parse_inputs({"inputs": {"x": np.ones((1, 8), dtype=bool)}}, mlp)


@pytest.mark.parametrize("doc", [[X8], "x", 3, None, True])
def test_wrong_top_level_type(mlp: ModelInfo, doc: object) -> None:
    with pytest.raises(InputError, match="must be a JSON object"):
        parse_inputs(doc, mlp)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({}, "needs an 'input_data' list or an 'inputs' object"),
        ({"input_data": [X8], "inputs": {"x": X8}}, "both"),
        ({"input": [X8]}, "unknown key"),
        ({"input_data": X8}, "list of lists"),
        ({"input_data": {"x": X8}}, "must be a list"),
        ({"inputs": [X8]}, "must be an object"),
        ({"inputs": {"x": "1,2,3"}}, "must be a list of numbers, not a string"),
    ],
)
def test_bad_structure(mlp: ModelInfo, doc: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_inputs(doc, mlp)


def test_input_count_mismatch(mlp: ModelInfo) -> None:
    with pytest.raises(InputShapeError, match=r"takes 1 input\(s\) \(x\) but 'input_data' has 2"):
        parse_inputs({"input_data": [X8, X8]}, mlp)


def test_unknown_and_missing_names(two: ModelInfo) -> None:
    with pytest.raises(InputError, match=r"Unknown input name\(s\) 'c'; the model's inputs are 'a', 'b'"):
        parse_inputs({"inputs": {"a": [0] * 6, "b": [0] * 4, "c": [1]}}, two)
    with pytest.raises(InputError, match=r"Missing input\(s\) 'b'") as err:
        parse_inputs({"inputs": {"a": [0] * 6}}, two)
    assert err.value.details == {"missing": ["b"]}


def test_integer_input_requires_integers(save) -> None:
    table = np.arange(20, dtype=np.float32).reshape(10, 2)
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="embed", axis=0)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2])],
        initializer=[helper.make_tensor("table", TensorProto.FLOAT, [10, 2], table.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    info = load_model(save(model))
    assert info.inputs[0].dtype == "int64"
    assert parse_inputs({"input_data": [[1, 2, 3]]}, info)[0].dtype == np.float32
    with pytest.raises(InputError, match=r"takes integers \(int64\); found 2.5 at index \[0, 1\]"):
        parse_inputs({"input_data": [[1, 2.5, 3]]}, info)


# --- sample sets -----------------------------------------------------------------------------------


def test_parse_samples_multi_and_single(mlp: ModelInfo) -> None:
    rows = [[float(i + j) for j in range(8)] for i in range(3)]
    multi = parse_samples({"inputs": [{"x": [r]} for r in rows]}, mlp)
    assert len(multi) == 3 and all(len(s) == 1 and s[0].shape == (1, 8) for s in multi)
    for doc in ({"input_data": [rows[0]]}, {"inputs": {"x": rows[0]}}):
        single = parse_samples(doc, mlp)
        assert len(single) == 1
        _same(single[0], multi[0])


def test_parse_samples_refusals(mlp: ModelInfo) -> None:
    with pytest.raises(InputError, match="empty"):
        parse_samples({"inputs": []}, mlp)
    with pytest.raises(InputTooLarge, match="3 samples"):
        parse_samples({"inputs": [{"x": X8}] * 3}, mlp, max_samples=2)
    bad = [{"x": X8}, {"x": [*X8[:7], float("nan")]}]
    with pytest.raises(NonFiniteInput, match=r"^Sample 1: Input 'x' has NaN") as err:
        parse_samples({"inputs": bad}, mlp)
    assert err.value.details["sample"] == 1
    with pytest.raises(InputError, match="Sample 0 must be an object"):
        parse_samples({"inputs": [X8]}, mlp)


def test_calibration_concatenates_samples(two: ModelInfo) -> None:
    s1 = parse_inputs({"input_data": [[1] * 6, [2] * 4]}, two)
    s2 = parse_inputs({"input_data": [[3] * 6, [4] * 4]}, two)
    cal = to_ezkl_calibration([s1, s2])
    assert cal == {"input_data": [[1.0] * 6 + [3.0] * 6, [2.0] * 4 + [4.0] * 4]}


def test_scalar_and_make_model_helper(save) -> None:
    node = helper.make_node("Mul", ["s", "v"], ["y"], name="mul")
    info = load_model(save(make_model([node], [("s", []), ("v", [1, 2])], [("y", [1, 2])])))
    arrays = parse_inputs({"inputs": {"s": 2, "v": [1, 2]}}, info)
    assert arrays[0].shape == () and float(arrays[0]) == 2.0
