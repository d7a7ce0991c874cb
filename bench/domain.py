"""Does a listed model answer every input of its domain? Random models compiled from a few samples with their domain
stated, then fresh inputs drawn uniformly inside it: the share whose witness the circuit computes (the step that
failed before domains: an overflow of the ranges the samples alone had sized), and proofs of a few, verified.

    python bench/domain.py [--out bench] [--fresh 200] [--proofs 3]

Models: two MLPs 6-8-3 with N(0, 1) weights (the construction of issue 73), a small CNN (1x8x8, conv 3x3 x4, relu,
dense 3), a scikit-learn logistic regression and a decision tree (skl2onnx, lowered to tensor operations by the
model check). Samples: 8 drawn from the domain [-1, 1]^n; the domain stated as -1:1. Writes OUT/domain.json and
OUT/domain.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = 8


def random_mlp(path: Path, seed: int) -> tuple[str, tuple[int, ...]]:
    """An MLP 6-8-3 with N(0, 1) weights (also the fuzz test's: tests/systems/ezkl/test_domain_fuzz.py)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)
    w2, b2 = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return "x", (1, 6)


def _cnn(path: Path, seed: int) -> tuple[str, tuple[int, ...]]:
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3)).eval()
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["image"], dynamo=False)
    return "image", (1, 1, 8, 8)


def _sklearn(path: Path, seed: int, kind: str) -> tuple[str, tuple[int, ...]]:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (200, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 0.5).astype(np.int64)
    model = LogisticRegression(max_iter=500) if kind == "logistic" else DecisionTreeClassifier(max_depth=4,
                                                                                               random_state=0)
    model.fit(x, y)
    options = {"zipmap": False} if kind == "logistic" else {"zipmap": False}
    path.write_bytes(to_onnx(model, x[:1], options={id(model): options}).SerializeToString())
    import onnx

    return onnx.load(str(path)).graph.input[0].name, (1, 5)


MODELS: dict[str, Any] = {
    "mlp 6-8-3 seed 1": lambda p: random_mlp(p, 1), "mlp 6-8-3 seed 3": lambda p: random_mlp(p, 3),
    "cnn 1x8x8": lambda p: _cnn(p, 0), "logistic regression": lambda p: _sklearn(p, 0, "logistic"),
    "decision tree": lambda p: _sklearn(p, 0, "tree"),
}


def measure(name: str, build: Any, fresh: int, proofs: int, work: Path) -> dict[str, Any]:
    from proofmarket.core.settings import Settings
    from proofmarket.systems.ezkl import ezkl_calls
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.workspace import Workspace

    rng = np.random.default_rng(7)
    onnx_path = work / "model.onnx"
    input_name, shape = build(onnx_path)
    samples = {"inputs": [{input_name: rng.uniform(-1, 1, shape).tolist()} for _ in range(SAMPLES)]}
    ws = Workspace(Settings(home=work / "home"))  # type: ignore[call-arg]
    try:
        started = time.perf_counter()
        result = ws.compile(onnx_path, samples, profile=PrivacyProfile(), domain="-1:1")
        compile_s = time.perf_counter() - started
        compiled = ws.store.path(result.manifest.compiled.cid)
        answered = 0
        for _ in range(fresh):
            doc = work / "input.json"
            doc.write_text(json.dumps({"input_data": [rng.uniform(-1, 1, shape).ravel().tolist()]}))
            try:
                ezkl_calls.gen_witness(doc, compiled, work / "witness.json")
                answered += 1
            except Exception:  # noqa: BLE001 (counted)
                pass
        verified = 0
        for _ in range(proofs):
            proved = ws.prove(result.model_id, {"input_data": rng.uniform(-1, 1, shape).tolist()})
            verified += bool(ws.verify(proved.bundle.model_dump(mode="json")).valid)
        return {"model": name, "logrows": result.manifest.logrows, "compile_s": round(compile_s, 1),
                "fresh": fresh, "answered": answered, "share": round(answered / fresh, 4), "proofs": proofs,
                "verified": verified}
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--fresh", type=int, default=200)
    parser.add_argument("--proofs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name, build in MODELS.items():
        with tempfile.TemporaryDirectory(prefix="proofmarket-domain-") as tmp:
            rows.append(measure(name, build, args.fresh, args.proofs, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    doc = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "samples": SAMPLES, "domain": "-1:1",
           "models": rows}
    (args.out / "domain.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["# Inputs inside the stated domain", "",
             f"`python bench/domain.py` ({doc['measured_at']}): each model compiled from {SAMPLES} samples with "
             "`--domain -1:1`, then fresh inputs drawn uniformly inside [-1, 1]^n; answered = the circuit computes "
             "its witness (the step an overflow fails), verified = proofs of a few made and checked.", "",
             "| model | logrows | compile s | answered | share | proofs verified |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['logrows']} | {r['compile_s']} | {r['answered']} / {r['fresh']} | "
              f"{r['share']:.1%} | {r['verified']} / {r['proofs']} |" for r in rows]
    (args.out / "domain.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
