"""load_model / normalize_model / model_commitment: acceptance, refusals and normalisation."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from model_builders import make_model, mlp_model
from onnx import TensorProto, helper

from proofmarket.core.errors import InvalidModel, ModelTooLarge, TensorTooLarge, UnsupportedOperator
from proofmarket.models import (
    MAX_OPSET,
    MIN_OPSET,
    SUPPORTED_OPS,
    TensorSpec,
    load_model,
    model_commitment,
    normalize_model,
    run_onnx,
)
from proofmarket.models.loader import MAX_TENSOR_ELEMENTS


def test_accepts_mlp_and_describes_it(mlp_path: Path) -> None:
    info = load_model(mlp_path)
    assert info.inputs == (TensorSpec("x", (1, 8), "float32"),)
    assert info.outputs == (TensorSpec("logits", (1, 3), "float32"),)
    assert info.opset == 13
    assert info.operators == frozenset({"Gemm", "Relu"})
    assert not info.is_classifier  # logits, no Softmax: a classifier only when its owner says so (--task)
    assert info.batch_inputs == ()
    assert not info.needs_normalization
    assert info.size_bytes == mlp_path.stat().st_size


def test_commitment_is_sha256_of_file_bytes(mlp_path: Path) -> None:
    expected = hashlib.sha256(mlp_path.read_bytes()).hexdigest()
    assert model_commitment(mlp_path) == expected
    assert load_model(mlp_path).sha256 == expected


def test_initializers_listed_as_inputs_are_not_inputs(two_input_path: Path) -> None:
    info = load_model(two_input_path)
    assert info.input_names == ("a", "b")
    assert info.input("a").shape == (1, 2, 3)


# --- refusals -----------------------------------------------------------------------------------------


def test_too_large(mlp_path: Path) -> None:
    with pytest.raises(ModelTooLarge, match="limit") as err:
        load_model(mlp_path, max_bytes=100)
    assert err.value.details["size_bytes"] == mlp_path.stat().st_size
    assert err.value.code == "model_too_large"


@pytest.mark.parametrize("data", [b"", b"this is not an onnx model at all", bytes(range(256)) * 4])
def test_not_onnx(save, data: bytes) -> None:
    with pytest.raises(InvalidModel, match="not a parseable ONNX model|not an ONNX model"):
        load_model(save(data))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel, match="no model file"):
        load_model(tmp_path / "nope.onnx")


def test_fails_checker(save) -> None:
    node = helper.make_node("Relu", ["nowhere"], ["y"], name="relu")
    model = make_model([node], [("x", [1, 4])], [("y", [1, 4])], check=False)
    with pytest.raises(InvalidModel, match="fails the ONNX checker"):
        load_model(save(model))


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1])
def test_opset_outside_range(save, opset: int) -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    model = make_model([node], [("x", [1, 4])], [("y", [1, 4])], opset=opset, ir_version=10, check=False)
    with pytest.raises(InvalidModel, match=f"opset {opset}") as err:
        load_model(save(model))
    assert err.value.details["opset"] == opset


def test_dynamic_inner_dim(save) -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    model = make_model([node], [("x", [1, "features"])], [("y", [1, "features"])])
    with pytest.raises(InvalidModel, match=r"Input 'x' has a dynamic dimension 1 \('features'\)") as err:
        load_model(save(model))
    assert err.value.details == {"tensor": "x", "dim": 1}


def test_unsupported_operator_named_with_node(save) -> None:
    nodes = [
        helper.make_node("RandomNormalLike", ["x"], ["noise"], name="add_noise"),
        helper.make_node("Add", ["x", "noise"], ["y"], name="add"),
    ]
    model = make_model(nodes, [("x", [1, 4])], [("y", [1, 4])])
    with pytest.raises(UnsupportedOperator, match=r"RandomNormalLike \(node 'add_noise'\)") as err:
        load_model(save(model))
    assert err.value.details["operators"] == ["RandomNormalLike"]
    assert "Add" in SUPPORTED_OPS and "RandomNormalLike" not in SUPPORTED_OPS


def test_several_unsupported_operators_all_named(save) -> None:
    m = onnx.numpy_helper.from_array(np.full((1, 4), 0.3, np.float32), "m")
    nodes = [
        helper.make_node("Mish", ["x"], ["g"], name="mish"),
        helper.make_node("Mod", ["g", "m"], ["y"], name="mod", fmod=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[m],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    with pytest.raises(UnsupportedOperator) as err:
        load_model(save(model))
    assert "Mish (node 'mish')" in err.value.message and "Mod (node 'mod')" in err.value.message
    assert err.value.message.count(".") == 1  # one plain sentence


def test_custom_domain_operator_refused(save) -> None:
    node = helper.make_node("FusedGemm", ["x", "W"], ["y"], name="fused", domain="com.microsoft")
    model = make_model(
        [node], [("x", [1, 4])], [("y", [1, 4])], {"W": np.eye(4, dtype=np.float32)}, check=False
    )
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOperator, match=r"com\.microsoft\.FusedGemm \(node 'fused'\)"):
        load_model(save(model))


@pytest.mark.parametrize("elem", [TensorProto.STRING])
def test_non_numeric_input_refused(save, elem: int) -> None:
    node = helper.make_node("Identity", ["x"], ["y"], name="id")
    model = make_model([node], [("x", [1, 4])], [("y", [1, 4])], in_type=elem, out_type=elem)
    with pytest.raises(InvalidModel, match="Input 'x' has element type"):
        load_model(save(model))


def test_boolean_inputs_travel_as_zero_and_one(save) -> None:
    from proofmarket.core.errors import InputError
    from proofmarket.models import parse_inputs

    node = helper.make_node("Cast", ["x"], ["y"], name="cast", to=TensorProto.FLOAT)
    info = load_model(save(make_model([node], [("x", [1, 4])], [("y", [1, 4])], in_type=TensorProto.BOOL)))
    assert info.inputs[0].dtype == "bool"
    assert parse_inputs({"input_data": [[1, 0, 0, 1]]}, info)[0].tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert parse_inputs({"input_data": [[True, False, False, True]]}, info)[0].tolist() == [[1.0, 0.0, 0.0, 1.0]]
    with pytest.raises(InputError, match="booleans as 0 or 1"):
        parse_inputs({"input_data": [[1, 0, 2, 1]]}, info)


def test_external_data_refused(save, tmp_path: Path) -> None:
    model = mlp_model()
    onnx.save_model(
        model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0
    )
    with pytest.raises(InvalidModel, match="external file"):
        load_model(tmp_path / "ext.onnx")


# --- batch dimensions and normalisation -------------------------------------------------------------


@pytest.mark.parametrize("batch", ["N", None])
def test_leading_symbolic_batch_dim_accepted_and_normalized(save, tmp_path: Path, batch) -> None:
    path = save(mlp_model(batch=batch), "batched.onnx")
    info = load_model(path)
    assert info.inputs[0].shape == (1, 8)
    assert info.outputs[0].shape == (1, 3)
    assert info.batch_inputs == ("x",)
    assert info.needs_normalization

    out = tmp_path / "norm" / "static.onnx"
    norm = normalize_model(path, out)
    assert norm.batch_inputs == () and not norm.needs_normalization
    assert norm.inputs == info.inputs and norm.outputs == info.outputs
    assert norm.sha256 == model_commitment(out) != info.sha256
    proto = onnx.load(str(out))
    for value in [*proto.graph.input, *proto.graph.output]:
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    np.testing.assert_array_equal(run_onnx(out, [x])[0], run_onnx(path, [x])[0])


def test_batch_dim_refused_when_not_ok(save) -> None:
    with pytest.raises(InvalidModel, match="Input 'x' has a dynamic batch dimension"):
        load_model(save(mlp_model(batch="N")), batch_dim_ok=False)


def test_normalize_spells_out_default_strides(cnn_path: Path, tmp_path: Path) -> None:
    info = load_model(cnn_path)
    assert info.needs_normalization and info.batch_inputs == ()
    out = tmp_path / "cnn.static.onnx"
    normalize_model(cnn_path, out)
    nodes = {n.name: n for n in onnx.load(str(out)).graph.node}
    for name in ("conv", "pool"):
        strides = [a for a in nodes[name].attribute if a.name == "strides"]
        assert len(strides) == 1 and list(strides[0].ints) == [1, 1]
    img = np.random.default_rng(0).random((1, 1, 6, 6), dtype=np.float32)
    np.testing.assert_allclose(run_onnx(out, [img])[0], run_onnx(cnn_path, [img])[0], rtol=1e-6)


def test_normalize_is_deterministic_and_idempotent(save, tmp_path: Path) -> None:
    path = save(mlp_model(batch="N"), "b.onnx")
    first = normalize_model(path, tmp_path / "n1.onnx")
    second = normalize_model(path, tmp_path / "n2.onnx")
    again = normalize_model(tmp_path / "n1.onnx", tmp_path / "n3.onnx")
    assert first.sha256 == second.sha256 == again.sha256


def test_output_that_stays_dynamic_refused(save) -> None:
    # Reshape to a shape read from the input's values: the output size is unknown statically
    nodes = [
        helper.make_node("Cast", ["s"], ["si"], name="cast", to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "si"], ["y"], name="reshape"),
    ]
    model = make_model([*nodes], [("x", [1, 4]), ("s", [2])], [("y", ["M", "K"])])
    with pytest.raises(InvalidModel, match="Output 'y'"):
        load_model(save(model))


# --- classifier heuristic ----------------------------------------------------------------------------


def _single(op: str, out_shape: list[int], save, **attrs: Any) -> bool:
    model = make_model(
        [
            helper.make_node("Gemm", ["x", "W"], ["z"], name="fc", transB=1),
            helper.make_node(op, ["z"], ["y"], **attrs),
        ],
        [("x", [1, 4])],
        [("y", out_shape)],
        {"W": np.ones((out_shape[1], 4), np.float32)},
    )
    return load_model(save(model)).is_classifier


def test_classifier_heuristic(save) -> None:
    assert _single("Softmax", [1, 3], save, axis=1)
    assert not _single("Identity", [1, 3], save)  # (1, k>1) alone is no evidence: a regression of k values too
    assert _single("Sigmoid", [1, 1], save)  # binary probability
    assert not _single("Identity", [1, 1], save)  # a regression


def test_a_small_file_whose_intermediate_tensor_explodes_is_refused(save) -> None:
    # Given a model of a few hundred bytes that expands its 8 inputs into 2^25 elements
    shape = np.array([1 << 22, 8], dtype=np.int64)
    nodes = [helper.make_node("Expand", ["x", "shape"], ["big"], name="blowup"),
             helper.make_node("ReduceSum", ["big"], ["y"], name="sum", keepdims=1)]
    model = make_model(nodes, [("x", [1, 8])], [("y", [1, 1])], {"shape": shape})
    path = save(model)
    assert path.stat().st_size < 1024

    # Then the loader refuses it before anything compiles, naming the tensor and the limit
    with pytest.raises(TensorTooLarge) as err:
        load_model(path)
    assert err.value.code == "tensor_too_large" and err.value.http_status == 422
    assert err.value.details["tensor"] == "big" and err.value.details["elements"] == (1 << 25)
    assert err.value.details["max_elements"] == MAX_TENSOR_ELEMENTS


def test_weights_over_the_element_limit_are_refused(mlp_path: Path, tmp_path: Path) -> None:
    with pytest.raises(TensorTooLarge, match="W1"):
        load_model(mlp_path, max_tensor_elements=100)  # W1 is 16 x 8
    with pytest.raises(TensorTooLarge):
        normalize_model(mlp_path, tmp_path / "out.onnx", max_tensor_elements=100)
    assert load_model(mlp_path, max_tensor_elements=128).size_bytes > 0
