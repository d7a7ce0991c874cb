#!/usr/bin/env python
"""Build proofmarket's reference ONNX models and sample inputs, deterministically, without torch.

    .venv/bin/python scripts/make_samples.py               # (re)write src/proofmarket/samples/
    .venv/bin/python scripts/make_samples.py --check-ezkl  # ... then run each through EZKL (mock)

Models are written by hand with ``onnx.helper`` from weights trained here with numpy / scikit-learn
(a dev dependency: the written files are committed, so the runtime never needs scikit-learn):

* ``mlp``:    Gemm-Relu-Gemm 8-16-3 on a seeded synthetic 3-class problem (make_classification)
* ``cnn``:    Conv(1->4, 4x4, stride 4)-Relu-Flatten-Gemm(16->10) on sklearn's 8x8 digits (a
              patchify stem: each 4x4 patch maps to 4 channels), trained with numpy SGD (Adam);
              input pixels scaled to [0, 1]. Sized for the prover: EZKL pays per activation
              (range checks, rescales, ReLU signs), not per multiply, so 16 activations instead of
              a 3x3/stride-2 stem's 64 fit 2^11 rows at one column (bench/README.md)
* ``logreg``: logistic regression on sklearn's breast-cancer set (standardised features),
              Gemm(30->2)-Softmax giving [P(malignant), P(benign)]

For each model NAME the script writes ``NAME.onnx``, ``NAME.samples.json``
(``{"inputs": [{"x": nested}, ...]}``, 8 test-set samples), ``NAME.input.json`` (one sample in
EZKL's ``{"input_data": [[flat]]}`` form) and ``NAME.meta.json`` (data set, labels, accuracy,
preprocessing). Running it twice writes identical bytes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from proofmarket.models import (  # noqa: E402
    load_model,
    normalize_model,
    parse_samples,
    run_onnx,
    to_ezkl_calibration,
    to_ezkl_input,
)

OUT = ROOT / "src" / "proofmarket" / "samples"
OPSET = 13
IR_VERSION = 8
N_SAMPLES = 8
PRODUCER = "proofmarket.make_samples"


@dataclass
class Built:
    name: str
    model: onnx.ModelProto
    samples: list[np.ndarray]  # each already in the model's input shape
    labels: list[int]  # true labels of the samples
    meta: dict[str, Any] = field(default_factory=dict)


# --- helpers ----------------------------------------------------------------------------------------


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _make_model(
    name: str,
    nodes: list[onnx.NodeProto],
    x_shape: list[int],
    out_name: str,
    out_shape: list[int],
    inits: dict[str, np.ndarray],
    doc: str,
    labels: list[str],
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=doc,
        model_version=1,
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"labels": json.dumps(labels)})
    onnx.checker.check_model(model, full_check=True)
    return model


def _pick_samples(y: np.ndarray, n: int) -> list[int]:
    """Indices of n examples taking classes round-robin (first unused example of each class)."""
    classes = sorted(set(int(c) for c in y))
    queues = {c: [int(i) for i in np.flatnonzero(y == c)] for c in classes}
    picked: list[int] = []
    while len(picked) < n:
        for c in classes:
            if queues[c] and len(picked) < n:
                picked.append(queues[c].pop(0))
    return picked


def _round(a: np.ndarray, decimals: int) -> np.ndarray:
    return np.round(a.astype(np.float64), decimals).astype(np.float32)


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


# --- mlp ----------------------------------------------------------------------------------------------


def build_mlp() -> Built:
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = make_classification(
        n_samples=1500,
        n_features=8,
        n_informative=6,
        n_redundant=2,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=1.2,
        random_state=7,
    )
    x = _round(x, 4)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(
            hidden_layer_sizes=(16,), activation="relu", alpha=1e-3, max_iter=600, random_state=0
        ).fit(x_tr, y_tr)
    w1, w2 = (_f32(w.T) for w in clf.coefs_)  # Gemm transB=1 wants [out, in]
    b1, b2 = (_f32(b) for b in clf.intercepts_)

    def forward(a: np.ndarray) -> np.ndarray:
        return np.maximum(a @ w1.T + b1, 0) @ w2.T + b2

    acc = _accuracy(forward(x_te).argmax(1), y_te)
    labels = ["class 0", "class 1", "class 2"]
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["h_relu"], name="relu1"),
        helper.make_node("Gemm", ["h_relu", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
    ]
    model = _make_model(
        "mlp",
        nodes,
        [1, 8],
        "logits",
        [1, 3],
        {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2},
        "Gemm-Relu-Gemm MLP 8-16-3 on a seeded synthetic 3-class problem; output: 3 logits.",
        labels,
    )
    idx = _pick_samples(y_te, N_SAMPLES)
    meta = {
        "description": "Gemm-Relu-Gemm MLP 8-16-3 classifying a synthetic 3-class data set; outputs logits.",
        "dataset": "sklearn make_classification(n_samples=1500, n_features=8, n_informative=6, "
        "n_redundant=2, n_classes=3, n_clusters_per_class=1, class_sep=1.2, random_state=7)",
        "training": "sklearn MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-3, random_state=0)",
        "labels": labels,
        "preprocessing": "none: features as generated (roughly unit scale)",
        "train_size": len(y_tr),
        "test_size": len(y_te),
        "test_accuracy": round(acc, 4),
    }
    return Built("mlp", model, [x_te[i].reshape(1, 8) for i in idx], [int(y_te[i]) for i in idx], meta)


# --- cnn ----------------------------------------------------------------------------------------------


CNN_CHANNELS, CNN_KERNEL, CNN_STRIDE = 4, 4, 4
CNN_SIDE = (8 - CNN_KERNEL) // CNN_STRIDE + 1  # 2: output positions per axis
CNN_FEATURES = CNN_CHANNELS * CNN_SIDE * CNN_SIDE  # 16


def _im2col(x: np.ndarray) -> np.ndarray:
    """(N, 1, 8, 8) -> (N, positions, kernel*kernel) patches for the stem conv (no padding)."""
    n, k, st = x.shape[0], CNN_KERNEL, CNN_STRIDE
    cols = np.empty((n, CNN_SIDE, CNN_SIDE, k * k), dtype=x.dtype)
    for di in range(k):
        for dj in range(k):
            cols[:, :, :, di * k + dj] = x[:, 0, di : di + st * CNN_SIDE : st, dj : dj + st * CNN_SIDE : st]
    return cols.reshape(n, CNN_SIDE * CNN_SIDE, k * k)


def _cnn_forward(p: dict[str, np.ndarray], cols: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    n = cols.shape[0]
    wc = p["conv.weight"].reshape(CNN_CHANNELS, CNN_KERNEL * CNN_KERNEL)
    z = cols @ wc.T + p["conv.bias"]  # (N, positions, C)
    z = z.transpose(0, 2, 1).reshape(n, CNN_CHANNELS, CNN_SIDE, CNN_SIDE)  # NCHW, as the ONNX Conv
    feat = np.maximum(z, 0).reshape(n, CNN_FEATURES)
    logits = feat @ p["fc.weight"].T + p["fc.bias"]
    return logits, {"z": z, "feat": feat}


def build_cnn(epochs: int = 40) -> Built:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float64).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)

    rng = np.random.default_rng(0)
    p = {
        "conv.weight": rng.normal(0, np.sqrt(2 / CNN_KERNEL**2), (CNN_CHANNELS, 1, CNN_KERNEL, CNN_KERNEL)),
        "conv.bias": np.zeros(CNN_CHANNELS),
        "fc.weight": rng.normal(0, np.sqrt(1 / CNN_FEATURES), (10, CNN_FEATURES)),
        "fc.bias": np.zeros(10),
    }
    adam_m = {k: np.zeros_like(v) for k, v in p.items()}
    adam_v = {k: np.zeros_like(v) for k, v in p.items()}
    lr, b1, b2, eps, batch = 0.01, 0.9, 0.999, 1e-8, 32
    cols_tr = _im2col(x_tr)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(y_tr))
        for start in range(0, len(order), batch):
            bi = order[start : start + batch]
            cols, yb, n = cols_tr[bi], y_tr[bi], len(bi)
            logits, cache = _cnn_forward(p, cols)
            prob = np.exp(logits - logits.max(1, keepdims=True))
            prob /= prob.sum(1, keepdims=True)
            prob[np.arange(n), yb] -= 1
            dlog = prob / n
            grads = {"fc.weight": dlog.T @ cache["feat"], "fc.bias": dlog.sum(0)}
            dfeat = (dlog @ p["fc.weight"]).reshape(n, CNN_CHANNELS, CNN_SIDE, CNN_SIDE)
            dz = (dfeat * (cache["z"] > 0)).reshape(n, CNN_CHANNELS, -1).transpose(0, 2, 1)  # (N, positions, C)
            grads["conv.weight"] = np.einsum("npk,npc->ck", cols, dz).reshape(
                CNN_CHANNELS, 1, CNN_KERNEL, CNN_KERNEL)
            grads["conv.bias"] = dz.sum(axis=(0, 1))
            step += 1
            for k, g in grads.items():
                adam_m[k] = b1 * adam_m[k] + (1 - b1) * g
                adam_v[k] = b2 * adam_v[k] + (1 - b2) * g * g
                mhat = adam_m[k] / (1 - b1**step)
                vhat = adam_v[k] / (1 - b2**step)
                p[k] = p[k] - lr * mhat / (np.sqrt(vhat) + eps)

    p32 = {k: _f32(v) for k, v in p.items()}
    logits_te, _ = _cnn_forward({k: v.astype(np.float64) for k, v in p32.items()}, _im2col(x_te))
    acc = _accuracy(logits_te.argmax(1), y_te)
    labels = [str(d) for d in range(10)]
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "conv.weight", "conv.bias"],
            ["conv_out"],
            name="conv",
            kernel_shape=[CNN_KERNEL, CNN_KERNEL],
            strides=[CNN_STRIDE, CNN_STRIDE],
        ),
        helper.make_node("Relu", ["conv_out"], ["conv_relu"], name="relu"),
        helper.make_node("Flatten", ["conv_relu"], ["features"], name="flatten", axis=1),
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    model = _make_model(
        "cnn",
        nodes,
        [1, 1, 8, 8],
        "logits",
        [1, 10],
        p32,
        "Small CNN on 8x8 handwritten digits (pixels in [0, 1]); output: 10 logits for digits 0-9.",
        labels,
    )
    idx = _pick_samples(y_te, N_SAMPLES)
    meta = {
        "description": "Conv(1->4, 4x4, stride 4)-Relu-Flatten-Gemm(16->10) on 8x8 digit images "
        "(a patchify stem); outputs 10 logits, one per digit.",
        "dataset": "sklearn load_digits (UCI optical digits, 8x8, 1797 images)",
        "training": f"numpy mini-batch Adam, lr {lr}, batch {batch}, {epochs} epochs, seed 0",
        "labels": labels,
        "preprocessing": "pixel value / 16 (pixels in [0, 1]), shape [1, 1, 8, 8]",
        "train_size": len(y_tr),
        "test_size": len(y_te),
        "test_accuracy": round(acc, 4),
    }
    return Built(
        "cnn", model, [_f32(x_te[i]).reshape(1, 1, 8, 8) for i in idx], [int(y_te[i]) for i in idx], meta
    )


# --- logreg -------------------------------------------------------------------------------------------


def build_logreg() -> Built:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_raw, y = data.data, data.target
    x_tr, x_te, y_tr, y_te = train_test_split(x_raw, y, test_size=0.25, random_state=0, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    z_tr = _round((x_tr - mean) / std, 4)
    z_te = _round((x_te - mean) / std, 4)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(z_tr, y_tr)
    coef, icpt = clf.coef_[0], clf.intercept_[0]
    # two logits [-z/2, z/2]: their softmax is [1 - sigmoid(z), sigmoid(z)]
    w = _f32(np.stack([-coef / 2, coef / 2]))
    b = _f32(np.array([-icpt / 2, icpt / 2]))
    logits = z_te.astype(np.float64) @ w.T + b
    acc = _accuracy(logits.argmax(1), y_te)
    labels = [str(n) for n in data.target_names]
    nodes = [
        helper.make_node("Gemm", ["x", "linear.weight", "linear.bias"], ["logits"], name="linear", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    model = _make_model(
        "logreg",
        nodes,
        [1, 30],
        "probs",
        [1, 2],
        {"linear.weight": w, "linear.bias": b},
        "Logistic regression on the Wisconsin breast-cancer features (standardised); "
        "output: [P(malignant), P(benign)].",
        labels,
    )
    idx = _pick_samples(y_te, N_SAMPLES)
    meta = {
        "description": "Logistic regression (Gemm-Softmax) on 30 standardised breast-cancer features; "
        "outputs [P(malignant), P(benign)].",
        "dataset": "sklearn load_breast_cancer (Wisconsin diagnostic, 569 cases)",
        "training": "sklearn LogisticRegression(C=1.0) on standardised features",
        "labels": labels,
        "preprocessing": "standardise each feature: (value - mean) / std, with the mean and std below",
        "feature_names": [str(n) for n in data.feature_names],
        "feature_mean": [round(float(v), 6) for v in mean],
        "feature_std": [round(float(v), 6) for v in std],
        "train_size": len(y_tr),
        "test_size": len(y_te),
        "test_accuracy": round(acc, 4),
    }
    return Built("logreg", model, [z_te[i].reshape(1, 30) for i in idx], [int(y_te[i]) for i in idx], meta)


BUILDERS: dict[str, Callable[[], Built]] = {"mlp": build_mlp, "cnn": build_cnn, "logreg": build_logreg}


# --- writing and checking -----------------------------------------------------------------------------


def _dump(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")


def _tolist(a: np.ndarray) -> Any:
    """Nested lists of the shortest decimals that read back as the same float32 values."""
    a32 = np.asarray(a, dtype=np.float32)
    short = [float(str(v)) for v in a32.ravel()]
    return np.array(short, dtype=object).reshape(a32.shape).tolist()


def write(built: Built, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{built.name}.onnx").write_bytes(built.model.SerializeToString(deterministic=True))
    _dump(out / f"{built.name}.samples.json", {"inputs": [{"x": _tolist(s)} for s in built.samples]})
    _dump(out / f"{built.name}.input.json", {"input_data": [_tolist(built.samples[0].ravel())]})
    meta = {"name": built.name, **built.meta, "sample_labels": built.labels}
    (out / f"{built.name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def self_check(name: str, out: Path) -> dict[str, Any]:
    """Reload what was written through proofmarket.models and compare with the labels."""
    info = load_model(out / f"{name}.onnx")
    samples = parse_samples(json.loads((out / f"{name}.samples.json").read_text()), info)
    single = parse_samples(json.loads((out / f"{name}.input.json").read_text()), info)
    assert np.array_equal(single[0][0], samples[0][0]), "input.json differs from the first sample"
    meta = json.loads((out / f"{name}.meta.json").read_text())
    preds = [int(run_onnx(out / f"{name}.onnx", s)[0].argmax()) for s in samples]
    hits = sum(p == t for p, t in zip(preds, meta["sample_labels"], strict=True))
    return {
        "sha256": info.sha256,
        "classifier": info.is_classifier,
        "sample_hits": f"{hits}/{len(preds)}",
    }


def ezkl_check(name: str, out: Path) -> dict[str, Any]:
    """gen_settings, calibrate_settings("resources"), compile_circuit, gen_witness, mock."""
    ezkl: Any = importlib.import_module("ezkl")  # its type stubs mark optional arguments required

    info = load_model(out / f"{name}.onnx")
    samples = parse_samples(json.loads((out / f"{name}.samples.json").read_text()), info)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"pm-{name}-") as tmp:
        d = Path(tmp)
        model = d / "model.onnx"
        normalize_model(out / f"{name}.onnx", model)
        settings, compiled, witness = d / "settings.json", d / "model.compiled", d / "witness.json"
        (d / "cal.json").write_text(json.dumps(to_ezkl_calibration(samples)))
        (d / "input.json").write_text(json.dumps(to_ezkl_input(samples[0])))
        assert ezkl.gen_settings(str(model), str(settings))
        assert ezkl.calibrate_settings(str(d / "cal.json"), str(model), str(settings), "resources")
        assert ezkl.compile_circuit(str(model), str(compiled), str(settings))
        ezkl.gen_witness(str(d / "input.json"), str(compiled), str(witness))
        ok = ezkl.mock(str(witness), str(compiled))
        run_args = json.loads(settings.read_text())["run_args"]
        wit = json.loads(witness.read_text())
        zk_out = np.array([float(v) for v in wit["pretty_elements"]["rescaled_outputs"][0]])
        plain = run_onnx(out / f"{name}.onnx", samples[0])[0].ravel()
    return {
        "mock": ok,
        "logrows": run_args["logrows"],
        "input_scale": run_args["input_scale"],
        "param_scale": run_args["param_scale"],
        "max_abs_err": float(np.max(np.abs(zk_out - plain))),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "names", nargs="*", metavar="NAME", help=f"models to build: {', '.join(BUILDERS)} (default: all)"
    )
    ap.add_argument("--out", type=Path, default=OUT, help=f"output directory (default: {OUT})")
    ap.add_argument("--check-ezkl", action="store_true", help="also compile each model with EZKL and mock it")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BUILDERS]
    if unknown:
        ap.error(f"unknown model name(s): {', '.join(unknown)}")
    for name in args.names or list(BUILDERS):
        built = BUILDERS[name]()
        write(built, args.out)
        report = {"test_accuracy": built.meta["test_accuracy"], **self_check(name, args.out)}
        if args.check_ezkl:
            report.update(ezkl_check(name, args.out))
        print(name, json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
