"""How proving cost grows with model size, and how good the predictor is (issue 9).

    python bench/scaling.py [--out bench] [--quick]

A family of MLPs (input-hidden-10, ReLU) and CNNs (conv 3x3 + ReLU + avg-pool + dense), built with
onnx.helper from seeded random weights (nothing downloaded). Each model is compiled with the
predictor's candidate (``proofmarket.systems.ezkl.predict.PREDICT_CANDIDATE``) so that prediction and measurement
describe the same circuit; key setup and one proof run in a child process, which reports its peak RSS.
The constants of ``proofmarket/systems/ezkl/predict.py`` are fitted on these rows (``fitted`` in the JSON: paste
them into the module when they move); the table shows each row's predicted / measured ratio.
Writes OUT/scaling.json and OUT/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from proofmarket.models import normalize_model
from proofmarket.systems.ezkl import predict as pred

MLPS = [(64, 32), (256, 64), (784, 56), (784, 128), (784, 256)]
CNNS = [(8, 4), (16, 8), (28, 8)]  # image side, channels


def mlp(inp: int, hidden: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {"W1": (rng.standard_normal((hidden, inp)) / np.sqrt(inp)).astype(np.float32),
             "B1": (rng.standard_normal(hidden) * 0.1).astype(np.float32),
             "W2": (rng.standard_normal((10, hidden)) / np.sqrt(hidden)).astype(np.float32),
             "B2": (rng.standard_normal(10) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "B2"], ["y"], transB=1)]
    return _model(nodes, [1, inp], [1, 10], inits)


def cnn(side: int, channels: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    pooled = (side // 2) ** 2 * channels
    inits = {"K": (rng.standard_normal((channels, 1, 3, 3)) / 3).astype(np.float32),
             "KB": np.zeros(channels, np.float32),
             "W": (rng.standard_normal((10, pooled)) / np.sqrt(pooled)).astype(np.float32),
             "B": np.zeros(10, np.float32), "S": np.array([1, pooled], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "K", "KB"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              strides=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p", "S"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1)]
    return _model(nodes, [1, 1, side, side], [1, 10], inits)


def _model(nodes: list[onnx.NodeProto], x: list[int], y: list[int], inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


CHILD = r"""
import json, resource, sys, time
import ezkl
work, srs = sys.argv[1], sys.argv[2]
t = time.perf_counter()
ezkl.setup(f"{work}/c.ezkl", f"{work}/vk", f"{work}/pk", srs)
setup_s = time.perf_counter() - t
t = time.perf_counter()
ezkl.prove(f"{work}/w.json", f"{work}/c.ezkl", f"{work}/pk", f"{work}/proof.json", srs)
prove_s = time.perf_counter() - t
print(json.dumps({"setup_s": setup_s, "prove_s": prove_s,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(name: str, model: onnx.ModelProto, params: int, srs_dir: Path) -> dict[str, Any]:
    import ezkl

    from proofmarket.systems.ezkl import ezkl_calls

    with tempfile.TemporaryDirectory(prefix=f"scaling-{name}-") as tmp:
        work = Path(tmp)
        onnx.save(model, str(work / "raw.onnx"))
        info = normalize_model(work / "raw.onnx", work / "m.onnx")
        rng = np.random.default_rng(1)
        flat = [[rng.uniform(0, 1, t.size).round(4).tolist() for t in info.inputs] for _ in range(4)]
        t = time.perf_counter()
        prediction = pred.predict(work / "m.onnx", flat)
        predict_s = time.perf_counter() - t
        base, legs, scale, cols = pred.PREDICT_CANDIDATE
        ra = ezkl_calls.run_args(input_visibility="public", param_visibility="fixed", decomp_base=base,
                                 decomp_legs=legs, num_inner_cols=cols)
        (work / "cal.json").write_text(json.dumps({"input_data": [[v for s in flat for v in s[0]]]}))
        (work / "in.json").write_text(json.dumps({"input_data": flat[0]}))
        ezkl_calls.gen_settings(work / "m.onnx", work / "s.json", ra)
        ezkl_calls.calibrate(work / "cal.json", work / "m.onnx", work / "s.json", scales=[scale],
                             max_logrows=pred.MAX_LOGROWS, rebase_multipliers=[1, 2])
        ezkl.compile_circuit(str(work / "m.onnx"), str(work / "c.ezkl"), str(work / "s.json"))
        ezkl.gen_witness(str(work / "in.json"), str(work / "c.ezkl"), str(work / "w.json"))
        logrows = json.loads((work / "s.json").read_text())["run_args"]["logrows"]
        srs = srs_dir / f"k{logrows}.srs"
        if not srs.exists():
            ezkl.gen_srs(str(srs), logrows)
        done = subprocess.run([sys.executable, "-c", CHILD, str(work), str(srs)], capture_output=True, text=True,
                              check=True, timeout=1800)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        got["pk_mb"] = (work / "pk").stat().st_size / 1e6
    return {"model": name, "params": params, "predict_s": round(predict_s, 2), "logrows": logrows,
            "prediction": prediction.to_dict(), "measured": {k: round(v, 3) for k, v in got.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--quick", action="store_true", help="the two smallest of each family")
    args = parser.parse_args(argv)
    family: list[tuple[str, onnx.ModelProto, int]] = []
    for inp, hidden in MLPS[: 2 if args.quick else None]:
        family.append((f"mlp-{inp}-{hidden}-10", mlp(inp, hidden), inp * hidden + hidden + hidden * 10 + 10))
    for side, ch in CNNS[: 2 if args.quick else None]:
        family.append((f"cnn-{side}x{side}-c{ch}", cnn(side, ch), ch * 10 + (side // 2) ** 2 * ch * 10 + 10))
    rows = []
    with tempfile.TemporaryDirectory(prefix="scaling-srs-") as srs_tmp:
        for name, model, params in family:
            print(f"[scaling] {name} ({params:,} parameters)", file=sys.stderr, flush=True)
            rows.append(measure(name, model, params, Path(srs_tmp)))
    work = [r["prediction"]["work"] for r in rows]
    fitted = {
        "PROVE_S_PER_WORK": pred.fit([(w, r["measured"]["prove_s"]) for w, r in zip(work, rows, strict=True)]),
        "PK_MB_PER_WORK": pred.fit([(w, r["measured"]["pk_mb"]) for w, r in zip(work, rows, strict=True)]),
    }
    for r in rows:
        p, m = r["prediction"], r["measured"]
        r["ratio"] = {"prove_s": round(p["prove_s"] / m["prove_s"], 2), "pk_mb": round(p["pk_mb"] / m["pk_mb"], 2),
                      "peak_rss_mb": round(p["peak_rss_mb"] / m["peak_rss_mb"], 2)}
    doc = {"machine": {"platform": platform.platform(), "python": platform.python_version()},
           "date": datetime.now(UTC).isoformat(timespec="seconds"), "candidate": pred.PREDICT_CANDIDATE,
           "constants": {"PROVE_S_PER_WORK": pred.PROVE_S_PER_WORK, "PK_MB_PER_WORK": pred.PK_MB_PER_WORK,
                         "RSS_BASE_MB": pred.RSS_BASE_MB, "RSS_PER_PK": pred.RSS_PER_PK},
           "fitted": fitted, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(doc, indent=1))
    cores = args.out / "cores.md"  # scaling with cores (bench/cores.py, on a machine of many cores when one is at hand)
    text = markdown(doc) + (f"\n## With cores\n\n{cores.read_text()}" if cores.exists() else "")
    (args.out / "scaling.md").write_text(text)
    print(text)
    return 0


def markdown(doc: dict[str, Any]) -> str:
    lines = ["Proving cost against model size, and the predictor (`proofmarket compile --dry-run`) against "
             f"measurement (`python bench/scaling.py`, {doc['date']}). Circuit: the predictor's candidate "
             f"{tuple(doc['candidate'])} (decomposition base, legs, scale, inner columns); one proof, key setup "
             "in the same child process (its peak RSS).", "",
             "| model | params | logrows | predict s | prove s (pred / meas) | pk MB (pred / meas) | "
             "peak RSS MB (pred / meas) | setup s |", "|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        p, m, q = r["prediction"], r["measured"], r["ratio"]
        lines.append(f"| {r['model']} | {r['params']:,} | {r['logrows']} | {r['predict_s']} | "
                     f"{p['prove_s']:.2f} / {m['prove_s']:.2f} ({q['prove_s']}x) | "
                     f"{p['pk_mb']:.0f} / {m['pk_mb']:.0f} ({q['pk_mb']}x) | "
                     f"{p['peak_rss_mb']:.0f} / {m['peak_rss_mb']:.0f} ({q['peak_rss_mb']}x) | {m['setup_s']:.2f} |")
    worst = max(max(r["ratio"]["prove_s"], 1 / r["ratio"]["prove_s"]) for r in doc["rows"])
    lines += ["", f"Worst prove-time error of the predictor: {worst:.2f}x (target: within 2x). Constants in use: "
              f"{doc['constants']}; fitted on these rows: {doc['fitted']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
