"""Run EZKL's own example models (examples/onnx/*/network.onnx + input.json) through proofmarket's checks.

    python scripts/ezkl_examples.py DIR [--out docs/ezkl_examples.json] [--timeout 120]

DIR is EZKL's examples/onnx folder (e.g. from a clone of github.com/zkonduit/ezkl; nothing is downloaded
here). For each model, in a child process with a time limit:

- ezkl: what EZKL 23 alone does with the files as given: gen_settings and compile_circuit;
- proofmarket: what `proofmarket compile` checks before tuning: the model (size, ONNX checker, opset,
  static shapes, constant folding, the operator allowlist) and the sample file as given (input.json,
  with EZKL's optional keys), then gen_settings and compile_circuit of the folded graph that would be
  committed: accepted, or refused with the error code and its one sentence.

Writes the JSON results and prints a Markdown section (the "EZKL examples" section of
docs/compatibility.md). Accepted share = accepted / models EZKL compiles.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def check_one(folder: Path) -> dict[str, Any]:
    import ezkl

    from proofmarket import models
    from proofmarket.core.errors import ProofMarketError

    net, inp = folder / "network.onnx", folder / "input.json"
    row: dict[str, Any] = {"model": folder.name}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            ok = ezkl.gen_settings(str(net), str(work / "s.json")) and ezkl.compile_circuit(
                str(net), str(work / "c.ezkl"), str(work / "s.json"))
            row["ezkl"] = "compiles" if ok else "fails"
        except BaseException as exc:  # ezkl raises RuntimeError, or panics (BaseException)
            row["ezkl"] = f"fails: {' '.join(str(exc).split())[:120]}"
        try:
            info = models.normalize_model(net, work / "folded.onnx")
            samples = models.parse_samples(json.loads(inp.read_text()), info)
            row["operators"] = sorted(info.operators)
            row["samples"] = len(samples)
        except ProofMarketError as exc:
            row["proofmarket"] = f"refused ({exc.code}): {exc.message}"
            return row
        except (OSError, json.JSONDecodeError) as exc:
            row["proofmarket"] = f"refused (invalid_input): the sample file cannot be read ({exc})"
            return row
        try:
            ok = ezkl.gen_settings(str(work / "folded.onnx"), str(work / "s2.json")) and ezkl.compile_circuit(
                str(work / "folded.onnx"), str(work / "c2.ezkl"), str(work / "s2.json"))
            row["proofmarket"] = "accepted" if ok else "refused: EZKL fails on the folded graph"
        except BaseException as exc:
            row["proofmarket"] = f"refused (circuit_compile_failed): {' '.join(str(exc).split())[:160]}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/ezkl_examples.json"))
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(check_one(args.dir)))
        return 0
    rows = []
    for folder in sorted(p for p in args.dir.iterdir() if p.is_dir()):
        if not (folder / "network.onnx").is_file() or not (folder / "input.json").is_file():
            rows.append({"model": folder.name, "ezkl": "no network.onnx/input.json", "proofmarket": "not run"})
            continue
        try:
            done = subprocess.run([sys.executable, __file__, str(folder), "--one"], capture_output=True, text=True,
                                  timeout=args.timeout)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else
                        {"model": folder.name, "ezkl": "?", "proofmarket": f"crashed: {done.stderr[-160:]}"})
        except subprocess.TimeoutExpired:
            rows.append({"model": folder.name, "ezkl": "?", "proofmarket": f"over {args.timeout:.0f} s"})
        print(f"{rows[-1]['model']}: {rows[-1].get('proofmarket')}", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 0


def markdown(rows: list[dict[str, Any]]) -> str:
    compiles = [r for r in rows if r.get("ezkl") == "compiles"]
    accepted = [r for r in compiles if r.get("proofmarket") == "accepted"]
    share = 100.0 * len(accepted) / max(len(compiles), 1)
    lines = [
        "## EZKL examples",
        "",
        f"EZKL's own `examples/onnx` ({len(rows)} folders), files as given (`python scripts/ezkl_examples.py DIR`): "
        f"EZKL 23.0.5 compiles {len(compiles)}; proofmarket accepts {len(accepted)} of those "
        f"(**{share:.0f}%**), and {sum(r.get('proofmarket') == 'accepted' for r in rows)} in all.",
        "",
        "| model | EZKL alone | proofmarket |",
        "|---|---|---|",
    ]
    for r in rows:
        pm = str(r.get("proofmarket", "")).replace("|", "/")
        lines.append(f"| {r['model']} | {str(r.get('ezkl', ''))[:60].replace('|', '/')} | {pm[:220]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
