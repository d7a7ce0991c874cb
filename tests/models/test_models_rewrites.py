"""Standard nodes EZKL's reader takes but the prover (Equal) or onnxruntime (a MatMul of int8) does not are
rewritten in the model check (``models/rewrites.py``); the rewritten model computes what the original means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from attention_model import masked_attention, masked_attention_reference
from model_builders import make_model
from onnx import TensorProto, helper, numpy_helper

from proofmarket.models import load_model, normalize_model, run_onnx
from proofmarket.models.rewrites import finite_constants


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def _normalized(tmp_path: Path, model: onnx.ModelProto) -> tuple[Path, tuple[str, ...], frozenset[str]]:
    raw, out = tmp_path / "raw.onnx", tmp_path / "normalized.onnx"
    onnx.save(model, str(raw))
    info = load_model(raw)
    normalize_model(raw, out)
    return out, info.notes, frozenset(info.operators)


def test_equal_of_floats_is_not_less_or_greater_with_the_same_answers(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Round", ["x"], ["r"]), helper.make_node("Equal", ["r", "c"], ["b"]),
                        helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)],
                       [("x", [1, 6])], [("y", [1, 6])], {"c": np.array([[1, 0, 2, -1, 1, 3]], np.float32)})
    path, notes, ops = _normalized(tmp_path, model)
    assert "Equal" not in ops and notes == ("Equal as Not(Less or Greater) (1 node)",)
    for x in (np.array([[0.9, 0.2, 2.4, -1.2, 1.6, 3.0]], np.float32),
              np.array([[0.1, -0.2, 1.4, 1.0, 0.6, 2.6]], np.float32)):
        np.testing.assert_array_equal(run_onnx(path, [x])[0], _run(model, x))


def test_equal_of_integers_and_of_booleans(tmp_path: Path) -> None:
    # an index compared with an int64 table (hummingbird's path counts), then a boolean compared with a boolean
    nodes = [helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=1),
             helper.make_node("Equal", ["i", "want"], ["hit"]),
             helper.make_node("Greater", ["x", "half"], ["big"]),
             helper.make_node("Equal", ["hit", "big"], ["same"]),
             helper.make_node("Cast", ["same"], ["y"], to=TensorProto.FLOAT)]
    model = make_model(nodes, [("x", [1, 4])], [("y", [1, 4])],
                       {"want": np.array([[2]], np.int64), "half": np.full((1, 4), 0.5, np.float32)})
    path, notes, ops = _normalized(tmp_path, model)
    assert "Equal" not in ops and "Xor" in ops and notes == ("Equal as Not(Less or Greater) (2 nodes)",)
    for x in (np.array([[0.1, 0.6, 0.9, 0.2]], np.float32), np.array([[0.7, 0.1, 0.3, 0.9]], np.float32)):
        np.testing.assert_array_equal(run_onnx(path, [x])[0], _run(model, x))


def test_a_matmul_of_int8_is_computed_in_int32(tmp_path: Path) -> None:
    # tract computes an int8 MatMul, ONNX has none (onnxruntime refuses to load the graph): cast, multiply, cast back
    nodes = [helper.make_node("Cast", ["x"], ["q"], to=TensorProto.INT8),
             helper.make_node("MatMul", ["q", "W"], ["p"]),
             helper.make_node("Cast", ["p"], ["y"], to=TensorProto.FLOAT)]
    weights = np.array([[1, 0], [0, 1], [1, 1]], np.int8)
    model = make_model(nodes, [("x", [1, 3])], [("y", [1, 2])], {"W": weights}, check=False)
    path, notes, ops = _normalized(tmp_path, model)
    assert notes == ("a MatMul of 8- or 16-bit integers computed in int32 (1 node)",)
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(run_onnx(path, [x])[0], x.astype(np.int8) @ weights)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's own exporter warns about torch's own internals
def test_torch_default_exports_of_transformer_blocks_pass_the_check_and_compute_what_torch_does(
        tmp_path: Path) -> None:
    """A GPT-2-style block (opset 20's Gelu, a causal mask of -inf) and torch's own TransformerEncoderLayer, as
    torch's default exporter writes them (weights in model.onnx.data beside them): the check no longer refuses their
    operators; the rewritten model's outputs are torch's (before: `unsupported_operator: Gelu`, then an overflow on
    the mask's infinity)."""
    import torch
    from script_module import load_script

    from proofmarket.models.external import self_contained

    reach = load_script(Path("bench/reach.py"), "bench_reach")  # the reach benchmark's blocks, one copy
    blocks = {"gpt2": reach.gpt2_block()[0].eval(), "encoder": reach.encoder_block()[0].eval()}
    x = np.random.default_rng(0).normal(size=(1, 16, 32)).astype(np.float32)
    for name, block in blocks.items():
        folder = tmp_path / name
        folder.mkdir()
        torch.onnx.export(block, (torch.tensor(x),), str(folder / "model.onnx"))  # the default exporter
        whole = self_contained(folder / "model.onnx", folder / "whole", 10**9)
        info = load_model(whole)
        assert "Gelu" not in info.operators and {"LayerNormalization", "Softmax", "MatMul"} <= set(info.operators)
        if name == "gpt2":
            assert any(n.startswith("Gelu as its definition") for n in info.notes), info.notes
            assert any(n.startswith("infinite constants (attention masks") for n in info.notes), info.notes
        normalize_model(whole, folder / "normalized.onnx")
        want = block(torch.tensor(x)).detach().numpy()  # type: ignore[operator]
        np.testing.assert_allclose(run_onnx(folder / "normalized.onnx", [x])[0], want, atol=1e-4)


@pytest.mark.parametrize(("fill", "added"), [(float("-inf"), False), (float(np.finfo(np.float32).min), False),
                                             (-1e9, False), (float("-inf"), True), (-1e30, True)],
                         ids=["masked_fill-inf", "masked_fill-lowest", "masked_fill-1e9", "added-inf", "added-1e30"])
def test_a_causal_masks_constant_becomes_one_a_circuit_holds_and_the_answers_stay(
        tmp_path: Path, fill: float, added: bool) -> None:
    """A causal mask as -inf (torch's masked_fill), as the float's lowest (Hugging Face's) or as -1e9: each becomes
    a finite constant a circuit holds (EZKL refused the lowest with "significant bit truncation"), and the model
    still computes the masked softmax: numpy's, with masked positions at weight 0."""
    model = masked_attention(fill, added=added)
    path, notes, _ = _normalized(tmp_path, model)
    assert any(n.startswith("infinite constants (attention masks") for n in notes), notes
    biggest = max(float(np.abs(numpy_helper.to_array(i).astype(np.float64)).max(initial=0))
                  for i in onnx.load(str(path)).graph.initializer)
    assert biggest < 1e3, biggest  # nothing mask-sized is left for the circuit to hold
    for seed in range(3):
        x = np.random.default_rng(seed).normal(size=(1, 6, 8)).astype(np.float32)
        np.testing.assert_allclose(run_onnx(path, [x])[0], masked_attention_reference(model, x), atol=1e-6)


def test_a_large_constant_under_a_masks_size_is_kept() -> None:
    model = make_model([helper.make_node("Mul", ["x", "big"], ["y"])], [("x", [1, 2])], [("y", [1, 2])],
                       {"big": np.array([[1e8, -3.0]], np.float32)})
    assert finite_constants(model) == []
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), [[1e8, -3.0]])
