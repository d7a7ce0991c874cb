"""Gas per contract function, measured across the chain tests, and compared with the last release.

Every transaction of a contract function (``ChainClient.transact``: the wrappers and the tests' raw calls alike)
appends its contract (the artifact's name, for a contract a wrapper or a deployment named), function and gasUsed to
the file ``PROOFMARKET_GAS_LOG`` names. ``run`` runs the chain, property and on-chain tests (the fast ones: no
planted-bug copies of a contract) with it set, then writes ``bench/gas_functions.json`` and ``.md``: for each
function its calls, least, median and most gas, beside the median of the last release (``release`` in the JSON,
kept from run to run; ``--release`` records this run as the release's).

    python scripts/gas_report.py run              # about 10 minutes on 2 cores
    python scripts/gas_report.py run --release    # at a release: this run becomes the comparison
    python scripts/gas_report.py report LOG       # from a log written by any test run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "gas_functions"
TESTS = ["tests/chain", "tests/properties", "tests/onchain"]


def measure(log: Path) -> dict[str, dict[str, int]]:
    """``contract.function`` -> calls, min, median, max gas."""
    seen: dict[str, list[int]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        seen.setdefault(f"{doc['contract']}.{doc['function']}", []).append(int(doc["gas"]))
    return {k: {"calls": len(v), "min": min(v), "median": int(statistics.median(v)), "max": max(v)}
            for k, v in sorted(seen.items())}


def report(log: Path, release: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from proofmarket import __version__

    current = measure(log)
    old = json.loads(OUT.with_suffix(".json").read_text()) if OUT.with_suffix(".json").exists() else {}
    baseline = old.get("release") or {"version": __version__, "functions": current}
    if release:
        baseline = {"version": __version__, "functions": current}
    doc = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "version": __version__, "functions": current,
           "release": baseline}
    OUT.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    OUT.with_suffix(".md").write_text(markdown(doc))
    return doc


def markdown(doc: dict[str, Any]) -> str:
    base = doc["release"]
    lines = ["# Gas per contract function", "",
             f"`python scripts/gas_report.py run` ({doc['when']}, proofmarket {doc['version']}): every transaction "
             "the chain, property and on-chain tests send to a contract function, on anvil. The median is the "
             f"figure to compare; `release` is proofmarket {base['version']}'s median.", "",
             "| function | calls | least | median | most | release median | change |", "|---|---|---|---|---|---|---|"]
    for name, f in doc["functions"].items():
        was = base["functions"].get(name, {}).get("median")
        change = "new" if was is None else f"{(f['median'] - was) / was:+.1%}" if was else ""
        lines.append(f"| `{name}` | {f['calls']} | {f['min']:,} | {f['median']:,} | {f['max']:,} | "
                     f"{'' if was is None else f'{was:,}'} | {change} |")
    gone = sorted(set(base["functions"]) - set(doc["functions"]))
    if gone:
        lines += ["", f"Not sent in this run (in the release's): {', '.join(f'`{g}`' for g in gone)}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the chain tests with the gas log, then report")
    run.add_argument("--release", action="store_true", help="record this run as the release's figures")
    run.add_argument("--workers", default="2", help="pytest-xdist workers (default 2)")
    rep = sub.add_parser("report", help="report from a gas log")
    rep.add_argument("log", type=Path)
    rep.add_argument("--release", action="store_true")
    args = parser.parse_args()
    if args.command == "report":
        report(args.log, args.release)
    else:
        with tempfile.TemporaryDirectory(prefix="proofmarket-gas-") as tmp:
            log = Path(tmp) / "gas.jsonl"
            log.touch()
            env = {**os.environ, "PROOFMARKET_GAS_LOG": str(log)}
            code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                                    "no:randomly", "-m", "not slow", "-n", args.workers, *TESTS], cwd=ROOT, env=env)
            if code not in (0, 5):
                sys.exit(f"the tests failed (exit {code}): no report written")
            report(log, args.release)
    print(OUT.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
