"""What the whole `proofmarket prove` command costs against the proof inside it (issue 9: <= 1.2x).

    python bench/cli_overhead.py [--out bench] [--runs 3]

Compiles the mid-size model (the 784-56-10 MLP of bench/scaling.py, seeded weights) once into a
temporary home with the default tuning grid, then runs `proofmarket prove MODEL --input ... --json` as a
fresh process --runs times, and compares each run's wall time (process start to exit) with the prove_s
the bundle reports. Writes OUT/cli.json and OUT/cli.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from scaling import mlp

from proofmarket.core.settings import Settings
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.workspace import Workspace

TARGET = 1.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        home = Path(tmp)
        onnx.save(mlp(784, 56), str(home / "mlp784.onnx"))
        rng = np.random.default_rng(3)
        samples = {"input_data": [rng.random(784 * 8).round(4).tolist()]}
        (home / "input.json").write_text(json.dumps({"input_data": [rng.random(784).round(4).tolist()]}))
        ws = Workspace(Settings(home=home, _env_file=None))  # type: ignore[call-arg]
        try:
            print("[cli] compiling the 784-56-10 MLP (default grid)", file=sys.stderr, flush=True)
            model_id = ws.compile(home / "mlp784.onnx", samples, profile=PrivacyProfile()).model_id
        finally:
            ws.close()
        runs = []
        for i in range(args.runs):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "prove", model_id, "--input",
                                   str(home / "input.json"), "--home", str(home), "--json"],
                                  capture_output=True, text=True, check=True)
            wall = time.perf_counter() - started
            prove = float(json.loads(done.stdout)["bundle"]["timings"]["prove_s"])
            runs.append({"wall_s": round(wall, 3), "prove_s": round(prove, 3), "ratio": round(wall / prove, 3)})
            print(f"[cli] run {i + 1}: {runs[-1]}", file=sys.stderr, flush=True)
    ratio = statistics.median(r["ratio"] for r in runs)
    doc = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "model": "mlp-784-56-10", "runs": runs,
           "median_ratio": ratio, "target": TARGET, "met": ratio <= TARGET}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli.json").write_text(json.dumps(doc, indent=1))
    table = "\n".join([
        f"Whole `proofmarket prove` command against the prove inside it (`python bench/cli_overhead.py`, "
        f"{doc['date']}), 784-56-10 MLP, tuned:", "",
        "| run | command wall s | prove s (bundle) | ratio |", "|---|---|---|---|",
        *(f"| {i + 1} | {r['wall_s']} | {r['prove_s']} | {r['ratio']} |" for i, r in enumerate(runs)),
        "", f"Median ratio {ratio:.3f} (target <= {TARGET}: {'PASS' if doc['met'] else 'MISS'}). The command "
        "proves in-process (no prover process for one proof) and imports the SDK and EZKL lazily.", ""])
    (args.out / "cli.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
