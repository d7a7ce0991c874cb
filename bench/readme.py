"""Write the README's measured numbers from the bench JSON files (the last step of ``make bench``).

The README holds regions ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``; each is rendered here from
bench/NAME-ish JSON files and nothing else, so the README cannot quote a number the bench files do not hold
(tests/test_readme_bench.py renders them again and compares).

    python bench/readme.py [--check]     (--check: exit 1 when the README differs from the bench files)
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def load(name: str, bench: Path = BENCH) -> dict[str, Any] | None:
    path = bench / f"{name}.json"
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def when(doc: dict[str, Any]) -> str:
    stamp = doc.get("stamp") or {}
    date = str(stamp.get("date") or doc.get("date") or (doc.get("machine") or {}).get("date") or "undated")[:10]
    commit = stamp.get("commit") or doc.get("commit")
    return f"{date}, commit {commit}" if commit else date


def _n(value: float | None, fmt: str = "{:,.3g}") -> str:
    return "-" if value is None else fmt.format(value)


def results(bench: Path) -> str:
    doc = load("results", bench)
    if doc is None:
        return "Not measured yet: run `make bench`."
    rows = {(r["model"], r["profile"], r["row"]): r for r in doc["rows"]}
    lines = [f"`bench/results.md` ({when(doc)}; raw EZKL calls, same models, same run, median prove seconds):", "",
             "| model | profile | EZKL defaults | tuned (default objective) | speedup | logrows | verify ms | target |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for (model, profile, row), tuned in rows.items():
        if row != "tuned":
            continue
        default = rows.get((model, profile, "ezkl-default"), {})
        targets = tuned.get("targets") or {}
        speed = next((v for k, v in targets.items() if k.startswith(("speedup", "mid-size")) and v != "n/a"), "")
        lines.append(f"| {model} | {profile} | {_n(default.get('prove_s'), '{:.3g} s')} | "
                     f"{_n(tuned.get('prove_s'), '{:.3g} s')} | {_n(tuned.get('speedup_vs_default'), '{:.1f}x')} | "
                     f"{tuned.get('logrows') or '-'} | {_n(tuned.get('verify_ms'), '{:.1f}')} | "
                     f"{speed if speed and speed != 'n/a' else ''} |")
    return "\n".join(lines)


def gas(bench: Path) -> str:
    doc = load("gas", bench)
    if doc is None:
        return "Not measured yet: run `make bench`."
    lines = [f"Gas on anvil with the settings `compile` picks by default (`bench/gas.md`, {when(doc)}):", "",
             "| model | settings | proof bytes | deploy verifier | requestInference | acceptRequest | "
             "fulfill (first) | fulfill (steady) | verifyProof alone |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        g = r["gas"]
        lines.append(f"| {r['model']} | {r['settings']} | {r['proof_bytes']:,} | {g['deploy verifier']:,} | "
                     f"{g['requestInference']:,} | {g['acceptRequest']:,} | {g['fulfill (first)']:,} | "
                     f"{g['fulfill (steady)']:,} | {g['verifyProof alone']:,} |")
    x402 = next((r["gas"].get("x402 transferWithAuthorization") for r in doc["rows"]), None)
    if x402:
        lines += ["", f"An x402 settlement (one EIP-3009 transfer) is {x402:,} gas."]
    return "\n".join(lines)


def latency(bench: Path) -> str:
    doc = load("latency", bench)
    if doc is None:
        return "Not measured yet: run `make bench`."
    w = doc["warm"]
    lines = [f"The seeds' latency targets on the sample MLP with warm keys (`bench/latency.md`, {when(doc)}; "
             f"`{w['picked']}`, logrows {w['logrows']}):", "",
             "| measure | value | target | |", "|---|---:|---:|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['what']} | {t['ms']:,.1f} ms | <= {t['target_ms']:,.0f} ms | **{t['result']}** |")
    lines.append(f"| proofs per second, one warm worker | {w['worker_proofs_per_s']} | 20-100 | "
                 f"**{'PASS' if w['worker_proofs_per_s'] >= 20 else 'MISS'}** |")
    lines += ["", "Compile time with the default objective (`proofmarket compile`, wall seconds, this machine; "
                  "targets: the sample models under 10 s, the 784-56-10 MLP under 2 minutes):", "",
              "| model | profile | seconds | target | result | picked | proof bytes |",
              "|---|---|---:|---:|---|---|---:|"]
    for c in doc["compile"]:
        lines.append(f"| {c['model']} | {c['profile']} | {c['seconds']} | < {c.get('target_s', 10):g} s | "
                     f"**{c['target']}** | {c['picked']} | {c['proof_bytes']:,} |")
    return "\n".join(lines)


def http(bench: Path) -> str:
    doc = load("http", bench)
    if doc is None:
        return "Not measured yet: run `make bench`."
    h, raw = doc["http"], doc["raw_prove"]
    best = max(doc.get("throughput") or [{"calls_per_s": 0, "clients": 0}], key=lambda t: t["calls_per_s"])
    return (f"Over HTTP (`bench/http.md`, {when(doc)}): a paid MLP inference takes {h['median_s']:.3f} s against "
            f"{raw['median_s']:.3f} s raw prove in the same run (ratio {doc['ratio']:.2f}); the chain settlement "
            f"takes {h['chain_settle_median_s'] * 1000:.0f} ms of it and the SDK's check of the answer "
            f"{h['client_verify_median_s'] * 1000:.0f} ms; the node adds {doc['node_overhead_ms']:.0f} ms a call "
            f"besides them. Throughput: {best['calls_per_s']:.1f} calls/s at {best['clients']} clients.")


REGIONS: dict[str, Callable[[Path], str]] = {"results": results, "gas": gas, "latency": latency, "http": http}


def render(text: str, bench: Path = BENCH) -> str:
    for name, fn in REGIONS.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
        if pattern.search(text):
            body = fn(bench)
            text = pattern.sub(lambda m, body=body: m.group(1) + body.rstrip() + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md quotes numbers the bench files do not hold: run python bench/readme.py")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
