"""Run EZKL's own example models (examples/onnx/*/network.onnx + input.json) through `proofmarket compile`.

    python scripts/ezkl_examples.py DIR [--out docs/ezkl_examples.json] [--timeout 20] [--only NAME,...]

DIR is EZKL's examples/onnx folder (e.g. from a clone of github.com/zkonduit/ezkl; nothing is downloaded
here). For each model:

- EZKL alone: what EZKL does with the files as given (gen_settings and compile_circuit), in a child process;
- proofmarket: the real `proofmarket compile network.onnx --sample input.json --json` (tuning, keys, the
  self-check proof, the Solidity verifier and its check on a local EVM), in its own process group with a time
  limit, on a fresh node home shared by the run (its dev SRS files made first, untimed). Each model ends
  in one of: accepted (the model id), refused (the CLI's stable error code and its one sentence), crashed (a
  non-zero exit without the CLI's JSON error: a defect), or over the time limit. A model over the time limit
  then gets `proofmarket compile --dry-run` (the cost prediction, no keys): the table says whether its key
  setup and one proof alone are predicted to take longer than the limit.

    python scripts/ezkl_examples.py DIR --rows docs/ezkl_examples.json

re-renders the table from an earlier run's JSON, adding the predictions it lacks (no compile is re-run).

Writes the JSON results and prints a Markdown section (the "EZKL examples" section of docs/compatibility.md).
Accepted share = accepted / models EZKL compiles.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROOFMARKET = Path(sys.executable).with_name("proofmarket")


def ezkl_alone(folder: Path) -> str:
    import ezkl

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        net = folder / "network.onnx"
        try:
            ok = ezkl.gen_settings(str(net), str(work / "s.json")) and ezkl.compile_circuit(
                str(net), str(work / "c.ezkl"), str(work / "s.json"))
            return "compiles" if ok else "fails"
        except BaseException as exc:  # ezkl raises RuntimeError, or panics (BaseException)
            return f"fails: {' '.join(str(exc).split())[:120]}"


def make_dev_srs(home: Path, up_to: int) -> None:
    """The dev SRS files the compiles will want, made before the clock runs (once per machine in real use: a
    model's time limit is not spent on the first compile that needs a new logrows)."""
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace

    ws = Workspace(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    try:
        for logrows in range(8, up_to + 1):
            print(f"dev SRS logrows {logrows}", file=sys.stderr, flush=True)
            ws.srs_provider().get(logrows)
    finally:
        ws.close()


def run_group(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int | None, str, str]:
    """Run CMD in its own process group; on timeout kill the whole group (compile starts anvil). rc None = timed
    out."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def classify(rc: int | None, out: str, err: str, timeout: float) -> dict[str, Any]:
    if rc is None:
        return {"proofmarket": f"over {timeout:g} s"}
    doc: dict[str, Any] | None = None
    try:
        parsed = json.loads(out)
        doc = parsed if isinstance(parsed, dict) else None
    except ValueError:
        doc = None
    if rc == 0 and doc and doc.get("ok") is not False and doc.get("model_id"):
        picked = ((doc.get("manifest") or {}).get("tuning") or {}).get("picked")
        return {"proofmarket": "accepted", "model_id": doc["model_id"], "picked": picked}
    if rc != 0 and doc and isinstance(doc.get("error"), dict):
        e = doc["error"]
        return {"proofmarket": f"refused ({e.get('code')}): {e.get('message')}", "exit_code": rc}
    tail = " ".join((err or out).split())[-200:]
    return {"proofmarket": f"crashed (exit {rc}): {tail}", "exit_code": rc}


def predict_over_time(rows: list[dict[str, Any]], folder: Path, env: dict[str, str]) -> None:
    """For each row over the time limit without a prediction: the `compile --dry-run` prediction (logrows, key
    setup and prove seconds, or why it could not be made)."""
    for row in rows:
        if not str(row.get("proofmarket", "")).startswith("over") or "predicted" in row:
            continue
        net, inp = folder / row["model"] / "network.onnx", folder / row["model"] / "input.json"
        rc, out, _ = run_group([str(PROOFMARKET), "compile", str(net), "--sample", str(inp), "--dry-run", "--json"],
                               300.0, env)
        try:
            doc = json.loads(out) if rc == 0 else {}
        except ValueError:
            doc = {}
        pred = doc.get("prediction") if isinstance(doc, dict) else None
        row["predicted"] = ({k: pred.get(k) for k in ("logrows", "setup_s", "prove_s")} if isinstance(pred, dict)
                            else {"error": f"dry run exited {rc}"})
        print(f"{row['model']}: predicted {row['predicted']}", file=sys.stderr, flush=True)


def cannot_fit(row: dict[str, Any], timeout: float) -> bool:
    """Over the time limit and predicted to need more than it for key setup and one proof alone."""
    pred = row.get("predicted") or {}
    return (pred.get("setup_s") or 0.0) + (pred.get("prove_s") or 0.0) > timeout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/ezkl_examples.json"))
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per `proofmarket compile`")
    parser.add_argument("--only", default="", help="comma-separated model folders (default: all)")
    parser.add_argument("--srs-logrows", type=int, default=18, help="dev SRS files made before timing, up to this")
    parser.add_argument("--rows", type=Path, help="re-render from this earlier run's JSON (no compile re-run)")
    parser.add_argument("--ezkl-alone", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ezkl_alone:
        print(ezkl_alone(args.ezkl_alone))
        return 0
    if args.rows:
        rows = json.loads(args.rows.read_text())
        env = {**os.environ, "PROOFMARKET_HOME": tempfile.mkdtemp(prefix="proofmarket-ezkl-examples-")}
        predict_over_time(rows, args.dir, env)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
        print(markdown(rows, args.timeout))
        return 0
    only = {n for n in args.only.split(",") if n}
    home = Path(tempfile.mkdtemp(prefix="proofmarket-ezkl-examples-"))
    make_dev_srs(home, args.srs_logrows)
    env = {**os.environ, "PROOFMARKET_HOME": str(home)}
    rows = []
    for folder in sorted(p for p in args.dir.iterdir() if p.is_dir()):
        if only and folder.name not in only:
            continue
        net, inp = folder / "network.onnx", folder / "input.json"
        if not net.is_file() or not inp.is_file():
            rows.append({"model": folder.name, "ezkl": "no network.onnx/input.json", "proofmarket": "not run"})
            continue
        rc, out, _ = run_group([sys.executable, __file__, str(args.dir), "--ezkl-alone", str(folder)], 120.0)
        row: dict[str, Any] = {"model": folder.name,
                               "ezkl": out.strip().splitlines()[-1] if rc == 0 and out.strip() else
                               ("over 120 s" if rc is None else "crashed")}
        start = time.monotonic()
        rc, out, err = run_group([str(PROOFMARKET), "compile", str(net), "--sample", str(inp), "--json"],
                                 args.timeout, env)
        row.update(classify(rc, out, err, args.timeout), seconds=round(time.monotonic() - start, 1))
        rows.append(row)
        print(f"{row['model']}: {row['proofmarket'][:160]} ({row['seconds']} s)", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")  # kept if the predictions below are cut short
    predict_over_time(rows, args.dir, env)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows, args.timeout))
    return 0


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    compiles = [r for r in rows if r.get("ezkl") == "compiles"]
    pm = [str(r.get("proofmarket", "")) for r in compiles]
    return {"folders": len(rows), "ezkl_compiles": len(compiles),
            "accepted": sum(p == "accepted" for p in pm), "refused": sum(p.startswith("refused") for p in pm),
            "crashed": sum(p.startswith("crashed") for p in pm), "over_time": sum(p.startswith("over") for p in pm),
            "accepted_in_all": sum(r.get("proofmarket") == "accepted" for r in rows)}


def markdown(rows: list[dict[str, Any]], timeout: float) -> str:
    s = summary(rows)
    share = 100.0 * s["accepted"] / max(s["ezkl_compiles"], 1)
    too_big = sum(cannot_fit(r, timeout) for r in rows if r.get("ezkl") == "compiles")
    lines = [
        "## EZKL examples",
        "",
        f"EZKL's own `examples/onnx` ({s['folders']} folders), files as given, each through the real `proofmarket "
        f"compile --json` with {timeout:g} s at most (`python scripts/ezkl_examples.py DIR`): EZKL alone compiles "
        f"{s['ezkl_compiles']}; of those proofmarket accepts **{s['accepted']} ({share:.0f}%)**, refuses "
        f"{s['refused']} with a stable code, crashes on {s['crashed']} and takes longer than {timeout:g} s on "
        f"{s['over_time']}; {s['accepted_in_all']} accepted in all. Of those over {timeout:g} s, {too_big} are "
        f"predicted (`compile --dry-run`) to need more than {timeout:g} s for their key setup and one proof alone, "
        "which every compile does (the self-check); the others spend it timing circuit shapes.",
        "",
        "| model | EZKL alone | proofmarket compile | s |",
        "|---|---|---|---:|",
    ]
    for r in rows:
        pm = str(r.get("proofmarket", "")).replace("|", "/")
        pred = r.get("predicted") or {}
        if pred.get("logrows"):
            pm += (f" (predicted logrows {pred['logrows']}: key setup ~{pred.get('setup_s') or 0:,.0f} s, "
                   f"prove ~{pred.get('prove_s') or 0:,.0f} s)")
        lines.append(f"| {r['model']} | {str(r.get('ezkl', ''))[:60].replace('|', '/')} | {pm[:220]} | "
                     f"{r.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
