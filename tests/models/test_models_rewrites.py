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


def _guarded_softmax(fill: np.ndarray, *, other_use: bool = False, keep: str = "p") -> onnx.ModelProto:
    """x -> Softmax -> Where(IsNaN(p), fill, keep): the guard torch writes after scaled_dot_product_attention."""
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=-1), helper.make_node("IsNaN", ["p"], ["nan"]),
             helper.make_node("Where", ["nan", "fill", keep], ["y"])]
    outputs = [("y", [1, 2, 4])]
    if other_use:  # the test's value read elsewhere too
        nodes.append(helper.make_node("Cast", ["nan"], ["flags"], to=TensorProto.FLOAT))
        outputs.append(("flags", [1, 2, 4]))
    return make_model(nodes, [("x", [1, 2, 4])], outputs, {"fill": fill})


def test_a_nan_guard_is_its_value_and_the_answers_stay(tmp_path: Path) -> None:
    """Where(IsNaN(p), 0, p): no NaN in a circuit, the guard is p; the model computes numpy's softmax."""
    model = _guarded_softmax(np.array(0.0, np.float32))
    path, notes, ops = _normalized(tmp_path, model)
    assert "IsNaN" not in ops and "Where" not in ops, ops
    assert any(n.startswith("NaN guards") for n in notes), notes
    x = np.random.default_rng(1).normal(size=(1, 2, 4)).astype(np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(run_onnx(path, [x])[0], e / e.sum(axis=-1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("case", ["fill-not-scalar", "other-branch", "test-read-elsewhere"])
def test_an_isnan_that_is_not_a_guard_of_its_own_value_is_refused(tmp_path: Path, case: str) -> None:
    from proofmarket.core.errors import UnsupportedOperator

    fill = np.zeros((1, 2, 4), np.float32) + np.arange(4, dtype=np.float32)
    model = {"fill-not-scalar": lambda: _guarded_softmax(fill),
             "other-branch": lambda: _guarded_softmax(np.array(0.0, np.float32), keep="x"),
             "test-read-elsewhere": lambda: _guarded_softmax(np.array(0.0, np.float32), other_use=True)}[case]()
    raw = tmp_path / "raw.onnx"
    onnx.save(model, str(raw))
    with pytest.raises(UnsupportedOperator, match="IsNaN"):  # read elsewhere: the test stays for that reader
        load_model(raw)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hugging_face_gpt2_and_torch_sdpa_exports_pass_the_check_and_compute_what_torch_does(tmp_path: Path) -> None:
    """Hugging Face's GPT-2 (token ids flattened by a Reshape before the embedding; attention through
    scaled_dot_product_attention, a NaN guard after its softmax, a mask of the float's lowest) and a block calling
    ``F.scaled_dot_product_attention(is_causal=True)``, as torch's default exporter writes them: the check keeps
    neither IsNaN nor an unbounded mask, the token ids' domain is the vocabulary's rows, and the rewritten models
    compute what torch does (before: ``unsupported_operator: IsNaN``)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from proofmarket.models.domain import index_limits
    from proofmarket.models.external import self_contained

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=12, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    lm = GPT2LMHeadModel(config).eval()

    class Logits(torch.nn.Module):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return lm(input_ids=ids, use_cache=False).logits

    class Sdpa(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(8, 24)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = (z.view(1, 6, 2, 4).transpose(1, 2) for z in self.qkv(x).split(8, dim=2))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return y.transpose(1, 2).reshape(1, 6, 8)

    ids = np.random.default_rng(2).integers(0, 40, (1, 10)).astype(np.int64)
    x = np.random.default_rng(3).normal(size=(1, 6, 8)).astype(np.float32)
    for name, module, given in (("gpt2", Logits().eval(), ids), ("sdpa", Sdpa().eval(), x)):
        folder = tmp_path / name
        folder.mkdir()
        torch.onnx.export(module, (torch.tensor(given),), str(folder / "model.onnx"))
        whole = self_contained(folder / "model.onnx", folder / "whole", 10**9)
        info = load_model(whole)
        assert "IsNaN" not in info.operators, info.operators
        assert any(n.startswith("infinite constants (attention masks") for n in info.notes), info.notes
        normalize_model(whole, folder / "normalized.onnx")
        want = module(torch.tensor(given)).detach().numpy()
        np.testing.assert_allclose(run_onnx(folder / "normalized.onnx", [given])[0], want, atol=1e-4)
        if name == "gpt2":
            assert any(n.startswith("NaN guards") for n in info.notes), info.notes
            assert index_limits(whole) == {info.inputs[0].name: (0, 39)}  # the vocabulary: 40 rows


def test_every_guard_of_one_test_and_of_two_heads_is_written(tmp_path: Path) -> None:
    """Two guards read one IsNaN, and a second head's guard follows right after them (the graph is not edited
    under its own iteration): all go, no IsNaN is left."""
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=-1), helper.make_node("IsNaN", ["p"], ["nan"]),
             helper.make_node("Softmax", ["x"], ["q"], axis=1), helper.make_node("IsNaN", ["q"], ["nan2"]),
             helper.make_node("Where", ["nan", "zero", "p"], ["a"]),
             helper.make_node("Where", ["nan", "zero", "p"], ["b"]),
             helper.make_node("Where", ["nan2", "zero", "q"], ["c"]),
             helper.make_node("Sum", ["a", "b", "c"], ["y"])]
    model = make_model(nodes, [("x", [1, 2, 4])], [("y", [1, 2, 4])], {"zero": np.array(0.0, np.float32)})
    path, notes, ops = _normalized(tmp_path, model)
    assert "IsNaN" not in ops and "Where" not in ops, ops
    assert "NaN guards (Where(IsNaN(x), c, x)) as x: a circuit has no NaN (3 nodes)" in notes
    x = np.random.default_rng(4).normal(size=(1, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, [x])[0], _run(model, x), atol=1e-6)
