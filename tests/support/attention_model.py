"""One causal self-attention head as ONNX (onnx.helper), its mask as torch's ``masked_fill`` or an added bias, and
what it computes in numpy with the mask exact: shared by the rewrite tests and the compile tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def masked_attention(fill: float, *, added: bool = False, tokens: int = 6, width: int = 8, seed: int = 0,
                     spread: float = 0.5) -> onnx.ModelProto:
    """One causal self-attention head, y = softmax(mask(x Wq (x Wk)^T)) x: the mask ``masked_fill``'s
    (``Where(keep, scores, fill)``) or, with ``added``, a bias of 0 and ``fill`` added to the scores; the query and
    key weights drawn with standard deviation ``spread`` (0.5: unscaled scores reaching tens)."""
    rng = np.random.default_rng(seed)
    keep = np.tril(np.ones((tokens, tokens), dtype=bool))
    inits: dict[str, np.ndarray] = {"wq": rng.normal(0, spread, (width, width)).astype(np.float32),
                                    "wk": rng.normal(0, spread, (width, width)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"])]
    if added:
        inits["bias"] = np.where(keep, np.float32(0), np.float32(fill)).astype(np.float32)
        nodes.append(helper.make_node("Add", ["scores", "bias"], ["masked"]))
    else:
        inits["keep"], inits["fill"] = keep, np.array(fill, dtype=np.float32)
        nodes.append(helper.make_node("Where", ["keep", "scores", "fill"], ["masked"]))
    nodes += [helper.make_node("Softmax", ["masked"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "x"], ["y"])]
    graph = helper.make_graph(nodes, "attention",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, width])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def masked_attention_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """What ``masked_attention`` computes, in numpy with the mask exact (a masked position's weight is 0)."""
    scores = attention_scores(model, x)
    tokens = scores.shape[-1]
    scores = np.where(np.tril(np.ones((tokens, tokens), dtype=bool)), scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ x


def attention_scores(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The scores ``masked_attention`` masks, x Wq (x Wk)^T, in numpy."""
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return (x @ weights["wq"]) @ (x @ weights["wk"]).transpose(0, 2, 1)
