"""What the command line costs beside its work: `proofmarket --version` and `--help` (each a fresh process, target
under 0.5 s), `proofmarket compile` of the sample MLP with its defaults into a fresh home (target under 15 s; its
dev SRS made in that home is part of it), and the whole `proofmarket prove` command against the proof inside it
(target: at most 0.3 s more than the witness and the proof the bundle reports), on the sample MLP.

    python bench/cli_overhead.py [--out bench] [--runs 5]

Runs each command as a fresh process (the installed console script, as users run it): compile twice, each into
its own new home, then the others --runs times; writes OUT/cli.json and OUT/cli.md.
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
from typing import Any

from proofmarket.samples import sample_path

START_TARGET_S = 0.5  # --help and --version
PROVE_OVERHEAD_TARGET_S = 0.3  # prove: the command's wall time beyond the bundle's witness + prove
COMPILE_TARGET_S = 15.0  # compile of the sample MLP with its defaults, fresh home (issue 53)


def _timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def _prove_argv(cli: str, model_id: str, home: Path) -> list[str]:
    return [cli, "prove", model_id, "--input", str(sample_path("mlp", "input")), "--home", str(home), "--json"]


def import_floor(cli: str, model_id: str, home: Path, runs: int) -> dict[str, Any]:
    """What the prove command's imports cost inside it: the sum of its top-level imports' times (``-X importtime``:
    every module it imports, at start or inside a function, as the command imports them), median of ``runs`` runs,
    beside an interpreter that imports nothing."""
    totals, count = [], 0
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", cli, *_prove_argv(cli, model_id, home)[1:]],
                              capture_output=True, text=True, check=True)
        tops = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")]
        tops = [t for t in tops if len(t) == 3 and t[2].startswith(" ") and not t[2].startswith("  ")
                and t[1].strip().isdigit()]  # not the header ("cumulative")
        totals.append(sum(int(t[1]) for t in tops) / 1e6)
        count = len(tops)
    bare = statistics.median(_timed([sys.executable, "-c", "pass"])[0] for _ in range(runs))
    return {"modules": count, "imports_s": round(statistics.median(totals), 3), "interpreter_s": round(bare, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    cli = str(Path(sys.executable).parent / "proofmarket")
    starts = {flag: [round(_timed([cli, flag])[0], 3) for _ in range(args.runs)] for flag in ("--version", "--help")}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        compiles = []
        for i in range(2):
            home = Path(tmp) / f"home-{i}"
            wall, out = _timed([cli, "compile", str(sample_path("mlp")), "--sample", str(sample_path("mlp", "samples")),
                                "--home", str(home), "--json"])
            model_id = json.loads(out)["model_id"]
            compiles.append(round(wall, 2))
            print(f"[cli] compile {i + 1}: {compiles[-1]} s", file=sys.stderr, flush=True)
        runs = []
        for i in range(args.runs):
            wall, out = _timed(_prove_argv(cli, model_id, home))
            timings = json.loads(out)["bundle"]["timings"]
            work = float(timings["witness_s"]) + float(timings["prove_s"])
            runs.append({"wall_s": round(wall, 3), "witness_and_prove_s": round(work, 3),
                         "overhead_s": round(wall - work, 3)})
            print(f"[cli] prove run {i + 1}: {runs[-1]}", file=sys.stderr, flush=True)
        floor = import_floor(cli, model_id, home, args.runs)
    medians = {flag: statistics.median(times) for flag, times in starts.items()}
    overhead = statistics.median(r["overhead_s"] for r in runs)
    doc = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "model": "sample mlp", "starts_s": starts,
           "start_medians_s": medians, "prove_runs": runs, "prove_overhead_median_s": overhead,
           "compile_s": compiles, "prove_import_floor": floor,
           "targets": {"start_s": START_TARGET_S, "prove_overhead_s": PROVE_OVERHEAD_TARGET_S,
                       "compile_s": COMPILE_TARGET_S},
           "met": all(m < START_TARGET_S for m in medians.values()) and overhead <= PROVE_OVERHEAD_TARGET_S
           and max(compiles) < COMPILE_TARGET_S}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli.json").write_text(json.dumps(doc, indent=1))
    table = "\n".join([
        f"The command line beside its work (`python bench/cli_overhead.py`, {doc['date']}), each command a fresh "
        "process of the installed console script:", "",
        "| command | runs (s) | median s | target |", "|---|---|---|---|",
        *(f"| `proofmarket {flag}` | {', '.join(map(str, times))} | {medians[flag]:.3f} | < {START_TARGET_S} |"
          for flag, times in starts.items()),
        f"| `proofmarket compile` (sample MLP, defaults, fresh home) | {', '.join(map(str, compiles))} | "
        f"{statistics.median(compiles):.2f} | < {COMPILE_TARGET_S:g} |", "",
        "`proofmarket prove` on the sample MLP against the witness and proof its bundle reports:", "",
        "| run | command wall s | witness + prove s | overhead s |", "|---|---|---|---|",
        *(f"| {i + 1} | {r['wall_s']} | {r['witness_and_prove_s']} | {r['overhead_s']} |" for i, r in enumerate(runs)),
        "", f"Median overhead {overhead:.3f} s (target <= {PROVE_OVERHEAD_TARGET_S} s), of which the command's imports "
        f"alone {floor['imports_s']:.3f} s (its {floor['modules']} top-level imports as `python -X importtime` times "
        f"them in the command, median of {args.runs} runs; an interpreter that imports nothing: "
        f"{floor['interpreter_s']:.3f} s). "
        f"{'All targets met.' if doc['met'] else 'A target is missed.'} `--version` is answered before the command "
        "line loads; every command imports what it uses; `prove` proves in-process, and its plain form (these runs) "
        "loads neither Typer nor the settings (`cli/prove_cmd.py`).", ""])
    (args.out / "cli.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
