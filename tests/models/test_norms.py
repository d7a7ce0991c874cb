"""A LayerNorm over small activations, scaled into range at compile (``models/norms.py``): LayerNorm(x) is
LayerNorm(c x) with epsilon c^2 epsilon. Expected factors come from numpy's std of the samples' rows, answers from
numpy's layer norm, and the gain from EZKL's own witness against onnxruntime at scale 10."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proofmarket.models import normalize_model, run_onnx
from proofmarket.models.norms import MAX_VALUE, TARGET_STD, fit_norms

D = 16


def _norm_model(tmp_path: Path, epsilon: float | None = 1e-5) -> Path:
    """x (1x4x16) -> LayerNorm (last axis, weights and bias) -> Add a constant -> y."""
    rng = np.random.default_rng(0)
    attrs = {} if epsilon is None else {"epsilon": epsilon}
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], axis=-1, **attrs),
             helper.make_node("Add", ["n", "c"], ["y"])]
    inits = [numpy_helper.from_array(rng.uniform(0.5, 1.5, D).astype(np.float32), "g"),
             numpy_helper.from_array(rng.normal(size=D).astype(np.float32) * 0.1, "b"),
             numpy_helper.from_array(np.full((1, 4, D), 0.25, np.float32), "c")]
    graph = helper.make_graph(nodes, "norm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, D])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "raw.onnx"))
    normalize_model(tmp_path / "raw.onnx", tmp_path / "normalized.onnx")
    return tmp_path / "normalized.onnx"


def _points(std: float, count: int = 4) -> list[list[np.ndarray]]:
    return [[(np.random.default_rng(seed).normal(size=(1, 4, D)) * std + 0.01).astype(np.float32)]
            for seed in range(count)]


def _layer_norm(x: np.ndarray, model: Path, epsilon: float) -> np.ndarray:
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(model)).graph.initializer}
    x = x.astype(np.float64)
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * inits["g"] + inits["b"] + 0.25


def _factor(path: Path) -> float:
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    scaled = [float(v) for k, v in inits.items() if k.endswith("_factor")]
    return scaled[0] if scaled else 1.0


@pytest.mark.parametrize("std", [0.02, 0.003])
@pytest.mark.parametrize("epsilon", [1e-5, None], ids=["epsilon", "default-epsilon"])
def test_small_rows_are_scaled_by_the_power_of_two_that_lifts_their_std_and_answers_stay(
        tmp_path: Path, std: float, epsilon: float | None) -> None:
    path = _norm_model(tmp_path, epsilon)
    points = _points(std)
    smallest = min(float(p[0].reshape(-1, D).std(axis=1).min()) for p in points)
    note = fit_norms(path, points)
    want = 2.0 ** math.ceil(math.log2(TARGET_STD / smallest))
    assert _factor(path) == want and note is not None and f"scaled by {int(want)}" in note
    norm = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "LayerNormalization")
    scaled = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Mul")
    assert norm.input[0] == scaled.output[0] and list(scaled.input)[0] == "x"  # the norm reads c x
    assert next(a.f for a in norm.attribute if a.name == "epsilon") == pytest.approx((epsilon or 1e-5) * want ** 2)
    for x in (_points(std, 6)[5][0], (np.random.default_rng(9).normal(size=(1, 4, D)) * std).astype(np.float32)):
        np.testing.assert_allclose(run_onnx(path, [x])[0], _layer_norm(x, path, epsilon or 1e-5), atol=1e-4)


def test_rows_already_wide_are_left_as_they_are(tmp_path: Path) -> None:
    path = _norm_model(tmp_path)
    before = path.read_bytes()
    assert fit_norms(path, _points(1.0)) is None and path.read_bytes() == before


def test_the_factor_keeps_the_largest_value_in_range(tmp_path: Path) -> None:
    path = _norm_model(tmp_path)
    points = _points(0.02)
    points[0][0][0, 0, 0] = 3.0  # one large value: 64 x 3 would pass MAX_VALUE
    fit_norms(path, points)
    assert _factor(path) * 3.0 <= MAX_VALUE and _factor(path) > 1


@pytest.mark.slow
def test_ezkl_holds_the_scaled_norm_at_scale_10_where_the_small_one_was_far_off(tmp_path: Path) -> None:
    """EZKL's witness of the model against onnxruntime, at scale 10, on inputs of std 0.05: the scaled model is
    within 1% of the outputs' range, the unscaled one was not (its variance is a few steps of 2^-10)."""
    import ezkl

    points = _points(0.05)
    errors = {}
    for kind in ("small", "scaled"):
        folder = tmp_path / kind
        folder.mkdir()
        path = _norm_model(folder)
        if kind == "scaled":
            assert fit_norms(path, points) is not None
        data = folder / "data.json"
        data.write_text(json.dumps({"input_data": [np.concatenate([p[0].ravel() for p in points]).tolist()]}))
        run_args = ezkl.PyRunArgs()
        run_args.input_scale, run_args.param_scale, run_args.param_visibility = 10, 10, "fixed"
        settings, compiled = folder / "settings.json", folder / "model.compiled"
        ezkl.gen_settings(str(path), str(settings), py_run_args=run_args)
        try:
            ezkl.calibrate_settings(str(data), str(path), str(settings), "resources", scales=[10], max_logrows=18)
        except RuntimeError:  # the small one's variance rounds to zero: 1/sqrt of it overflows the circuit
            errors[kind] = math.inf
            continue
        ezkl.compile_circuit(str(path), str(compiled), str(settings))
        out_scale = json.loads(settings.read_text())["model_output_scales"][0]
        worst = 0.0
        for k, point in enumerate(points):
            one = folder / f"in{k}.json"
            one.write_text(json.dumps({"input_data": [point[0].ravel().tolist()]}))
            ezkl.gen_witness(str(one), str(compiled), str(folder / f"w{k}.json"))
            felts = json.loads((folder / f"w{k}.json").read_text())["outputs"][0]
            got = np.array([ezkl.felt_to_float(f, out_scale) for f in felts])
            worst = max(worst, float(np.abs(got - run_onnx(path, point)[0].ravel()).max()))
        errors[kind] = worst
    span = max(float(np.ptp(_layer_norm(p[0], tmp_path / "small" / "normalized.onnx", 1e-5))) for p in points)
    assert errors["scaled"] < 0.01 * span < errors["small"], (errors, span)


def test_two_norms_of_one_tensor_are_each_scaled_and_answer_as_before(tmp_path: Path) -> None:
    """A tensor normalised twice (two LayerNorms reading it: a probe output each would name it twice)."""
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n1"], axis=-1),
             helper.make_node("LayerNormalization", ["x", "g", "b"], ["n2"], axis=-1, epsilon=1e-6),
             helper.make_node("Add", ["n1", "n2"], ["y"])]
    inits = [numpy_helper.from_array(np.ones(D, np.float32), "g"),
             numpy_helper.from_array(np.zeros(D, np.float32), "b")]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, D])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "raw.onnx"))
    normalize_model(tmp_path / "raw.onnx", tmp_path / "n.onnx")
    assert fit_norms(tmp_path / "n.onnx", _points(0.02)) is not None
    assert sum(1 for n in onnx.load(str(tmp_path / "n.onnx")).graph.node if n.op_type == "Mul") == 2
    x = _points(0.02, 6)[5][0].astype(np.float64)
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-5) + (x - mean) / np.sqrt(var + 1e-6)
    np.testing.assert_allclose(run_onnx(tmp_path / "n.onnx", [x.astype(np.float32)])[0], want, atol=1e-4)


def _rms_model(tmp_path: Path, divide: bool) -> Path:
    """LLaMA's RMSNorm as torch writes it: x * Reciprocal(Sqrt(ReduceMean(Pow(x, 2)) + eps)) * w (or x / Sqrt)."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Pow", ["x", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
             helper.make_node("Add", ["ms", "eps"], ["ms_eps"]), helper.make_node("Sqrt", ["ms_eps"], ["root"])]
    if divide:
        nodes.append(helper.make_node("Div", ["x", "root"], ["normed"]))
    else:
        nodes += [helper.make_node("Reciprocal", ["root"], ["inv"]), helper.make_node("Mul", ["x", "inv"], ["normed"])]
    nodes.append(helper.make_node("Mul", ["w", "normed"], ["y"]))
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array([-1], np.int64), "axes"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, D).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "rms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, D])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "raw.onnx"))
    normalize_model(tmp_path / "raw.onnx", tmp_path / "normalized.onnx")
    return tmp_path / "normalized.onnx"


@pytest.mark.parametrize("divide", [False, True], ids=["reciprocal", "divide"])
def test_an_rms_norm_written_out_is_scaled_by_its_rows_root_mean_square(tmp_path: Path, divide: bool) -> None:
    path = _rms_model(tmp_path, divide)
    points = _points(0.02)
    smallest = min(float(np.sqrt((p[0].reshape(-1, D).astype(np.float64) ** 2).mean(axis=1)).min()) for p in points)
    assert fit_norms(path, points) is not None
    assert _factor(path) == 2.0 ** math.ceil(math.log2(TARGET_STD / smallest))
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}["w"]
    x = (np.random.default_rng(11).normal(size=(1, 4, D)) * 0.02).astype(np.float32)
    xd = x.astype(np.float64)
    want = xd / np.sqrt((xd ** 2).mean(axis=-1, keepdims=True) + 1e-6) * weights
    np.testing.assert_allclose(run_onnx(path, [x])[0], want, atol=1e-4)
    model = onnx.load(str(path))
    scaled = next(n.output[0] for n in model.graph.node if n.name.endswith("_mul"))
    assert sum(scaled in n.input for n in model.graph.node) == 2  # the Pow and the product read c x


def test_a_square_not_followed_by_the_whole_norm_is_left_alone(tmp_path: Path) -> None:
    """x^2 averaged and square-rooted but multiplied into another tensor: not an RMSNorm of x."""
    nodes = [helper.make_node("Pow", ["x", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
             helper.make_node("Add", ["ms", "eps"], ["ms_eps"]), helper.make_node("Sqrt", ["ms_eps"], ["root"]),
             helper.make_node("Reciprocal", ["root"], ["inv"]), helper.make_node("Mul", ["other", "inv"], ["y"])]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array([-1], np.int64), "axes"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
             numpy_helper.from_array(np.ones((1, 4, 1), np.float32), "other")]
    graph = helper.make_graph(nodes, "not", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "raw.onnx"))
    normalize_model(tmp_path / "raw.onnx", tmp_path / "n.onnx")
    before = (tmp_path / "n.onnx").read_bytes()
    assert fit_norms(tmp_path / "n.onnx", _points(0.02)) is None and (tmp_path / "n.onnx").read_bytes() == before
