"""Write the README's (and docs/deploy-chain.md's) measured numbers from the bench JSON files (the last step of
``make bench``).

The README holds regions ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``; each is rendered here from
bench/NAME-ish JSON files and nothing else, so the README cannot quote a number the bench files do not hold
(tests/test_readme_bench.py renders them again and compares).

    python bench/readme.py [--check]     (--check: exit 1 when the README differs from the bench files)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
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
    g = doc["rows"][0]["gas"]
    deployment = sum(v for k, v in g.items() if k.startswith("deploy ") and k not in ("deploy verifier", "deploy USDC"))
    lines += [f"A whole market deployment off the devnet (every contract but USDC) is {deployment:,} gas. The first "
              "fulfilment on a fresh market also pays one-time writes (the platform's balance, the owner's and the "
              "prover's first credit); every later one pays the steady figure."]
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
            f"besides them" + (f" (its own work, measured inside it: {doc['node_work_ms']:.0f} ms p50, target "
                               f"{doc['node_work_target_ms']:.0f})" if doc.get("node_work_ms") is not None else "")
            + f". Throughput: {best['calls_per_s']:.1f} calls/s at {best['clients']} clients.")


def cli(bench: Path) -> str:
    doc = load("cli", bench)
    if doc is None or "start_medians_s" not in doc:
        return "Not measured yet: run `make bench`."
    starts = doc["start_medians_s"]
    return (f"Measured (`bench/cli.md`, {when(doc)}): `proofmarket --version` {starts['--version']:.3f} s, "
            f"`proofmarket --help` {starts['--help']:.3f} s (medians, each a fresh process; target under "
            f"{doc['targets']['start_s']} s); `proofmarket prove` on the sample MLP adds "
            f"{doc['prove_overhead_median_s']:.3f} s to its witness and proof (target at most "
            f"{doc['targets']['prove_overhead_s']} s)"
            + (f", of which loading its code {doc['prove_import_floor']['imports_s']:.3f} s"
               if doc.get("prove_import_floor") else "") + ".")


def batch_gas(bench: Path) -> str:
    doc = load("batch_gas", bench)
    if doc is None:
        return "Not measured yet: run `make bench`."
    lines = [f"Gas per escrow request when K requests share one proof (`bench/batch_gas.md`, {when(doc)}; sample MLP, "
             "real proofs):", "", "| K | settling transaction | per request |", "|---:|---:|---:|"]
    lines += [f"| {r['k']} | {r['settle_gas']:,} | {r['gas_per_request']:,} |" for r in doc["rows"]]
    listings = doc.get("listings") or {}
    if listings:
        own = listings["own verifier (deploy + register)"]
        lines += ["", "| a listing | gas | vs its own verifier |", "|---|---:|---:|"]
        lines += [f"| {label} | {gas:,} | {gas / own:.0%} |" for label, gas in listings.items()]
    return "\n".join(lines)


def throughput(bench: Path) -> str:
    doc = load("throughput", bench)
    if doc is None:
        return "Not measured yet: run `make bench`."
    rows = [(n["prover_workers"], n.get("batch_window_ms", 0), r) for n in doc["nodes"] for r in n["levels"]]
    t = doc["target"]
    batches = doc.get("raw_batches") or []
    layouts = doc.get("raw_layouts") or []
    ceiling = _raw_best(doc, batches, layouts)
    cells = "; ".join(f"{r['verified_per_s']}/s ({r['verified_per_s'] / ceiling:.2f} of raw EZKL's best) at "
                      f"{r['clients']} client(s) with {w} prover(s)"
                      + (f", batching ({window:g} ms window)" if window else ", each call its own proof")
                      for w, window, r in rows if r["verified_per_s"])
    raw_k = "".join(f", {b['calls_per_s']}/s in batches of {b['size']}" for b in batches) + "".join(
        f", {b['calls_per_s']}/s in {b['workers']} processes of {b['threads']} thread(s) side by side (the node's "
        "layout)" for b in layouts)
    cost = doc.get("batching_cost_ms")
    cnn = doc.get("cnn")
    cnn_best = max((r["verified_per_s"] or 0 for n in (cnn or {}).get("nodes", []) for r in n["levels"]), default=None)
    if "ratio" in t:
        target = (f" Target: at {t['clients']} clients >= {t['ratio']:g} of raw EZKL's best rate on the same circuits "
                  f"({ceiling}/s): {t['best_ratio']}, **{t['result']}** (what stands between is in the file).")
    else:  # a file from before the ratio target
        target = f" Target >= {t['verified_per_s']:g}/s at {t['clients']} clients: **{t['result']}**."
    return (f"Verified inferences per second through one node (`bench/throughput.md`, {when(doc)}; sample MLP, "
            f"distinct inputs, no proof cache, paid on batch-settlement channels): {cells}; raw EZKL in the same "
            f"run {doc['raw']['per_s']}/s alone{raw_k}."
            + (f" Batching costs a lone caller {cost['ms']} ms at p50 (target <= {cost['target_ms']:g}: "
               f"**{cost['result']}**)." if cost and cost.get("ms") is not None else "")
            + (f" The hashed-input CNN (never batched): {cnn_best}/s at best, raw EZKL {cnn['raw']['per_s']}/s."
               if cnn and cnn_best is not None else "")
            + _one_caller(doc)
            + target)


def _raw_best(doc: dict[str, Any], batches: list[dict[str, Any]], layouts: list[dict[str, Any]]) -> float:
    """Raw EZKL's best rate on the node's circuits (``throughput.raw_best``, which this script does not import: it
    loads the node): one process, a batch circuit, or the node's layout of prover processes."""
    return float(max([doc["raw"]["per_s"], *[b["calls_per_s"] for b in [*batches, *layouts]]]))


def _one_caller(doc: dict[str, Any]) -> str:
    """The one caller's rows (many calls at once with one API key, on the model's batch circuits), if measured."""
    caller = doc.get("one_caller")
    if not caller or not caller.get("levels"):
        return ""
    batches = caller.get("raw_batches") or []
    ceiling = _raw_best(doc, batches, caller.get("raw_layouts") or [])
    cells = "; ".join(f"{r['verified_per_s']}/s ({r['verified_per_s'] / ceiling:.2f} of raw EZKL's best on its "
                      f"circuits, {r['mean_batch']} calls a proof) with {r['in_flight']} calls in flight"
                      for r in caller["levels"] if r["verified_per_s"])
    return (f" One caller with many calls at once (one API key; the model compiled with batch circuits of "
            f"{', '.join(str(b['size']) for b in batches)}, strangers never share a proof): {cells}.")


def chain_costs(bench: Path) -> str:
    """docs/deploy-chain.md's table: what each transaction of a deployment and a call costs, in gas and USD."""
    doc, attested = load("gas", bench), load("gas_attested", bench)
    if doc is None or attested is None:
        return "Not measured yet: run `make bench`."
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import prices  # bench/prices.py: the one place the prices are stated

    row = next(r for r in doc["rows"] if r["model"] == "mlp")
    g, b = row["gas"], row.get("tx_bytes") or {}
    ag, ab = attested["gas"], attested.get("tx_bytes") or {}
    contracts = [k for k in g if k.startswith("deploy ") and k not in ("deploy verifier", "deploy USDC")]

    def op(*names: str, gas: dict[str, int] = g, size: dict[str, int] = b) -> tuple[int, int | None]:
        return sum(gas[n] for n in names), (sum(size[n] for n in names) if all(n in size for n in names) else None)

    def cells(*ops: tuple[int, int | None]) -> str:
        def join(values: list[str]) -> str:
            return " / ".join(values)
        l1 = [prices.dollars(prices.l1_data_bound_usd(n)) if n is not None else "-" for _, n in ops]
        return (f"{join([f'{gas:,}' for gas, _ in ops])} | "
                f"{join([prices.dollars(prices.l2_usd(gas, 'Base')) for gas, _ in ops])} | "
                f"{join([prices.dollars(prices.l2_usd(gas, 'Arbitrum')) for gas, _ in ops])} | {join(l1)}")

    rows = [
        (f"deploy the market, ERC-8004 registries and court (once; {len(contracts)} contracts)", [op(*contracts)]),
        ("a model: deploy its verifier + register (once per model)", [op("deploy verifier", "register")]),
        ("escrow call, consumer: approve (while the allowance lasts, once)", [op("approve")]),
        ("escrow call, consumer: requestInference", [op("requestInference")]),
        ("escrow call, node: acceptRequest", [op("acceptRequest")]),
        ("escrow call, node: fulfill (the proof verified on chain), first / steady",
         [op("fulfill (first)"), op("fulfill (steady)")]),
        ("x402 call: the payment's `transferWithAuthorization` (sent and paid for by the facilitator)",
         [op("x402 transferWithAuthorization")]),
        ("attested call: request (escrow)", [op("request (escrow)", gas=ag, size=ab)]),
        ("attested call: commit, one per job / in a batch of 32",
         [op("commit (post commitment, one job)", gas=ag, size=ab),
          op("commit batch of 32 (per request)", gas=ag, size=ab)]),
        ("attested call: finalize after the window", [op("finalize (paid after the window)", gas=ag, size=ab)]),
        ("validator: stake / challenge / vote",
         [op("stake (validator: a checkpoint)", gas=ag, size=ab),
          op("challenge (with bond, escrows its share)", gas=ag, size=ab),
          op("vote (escrows its share)", gas=ag, size=ab)]),
    ]
    lines = [f"From `bench/gas.md` and `bench/gas_attested.md` ({when(doc)}; `make bench`, measured on anvil; the "
             f"reference `mlp` model at the settings `compile` picks, `{row['settings']}`), in USD at the prices "
             f"stated in `bench/prices.py` (chosen {prices.PRICES_CHOSEN}): L2 execution gas at "
             f"{prices.L2_GAS_GWEI['Base']:g} gwei on Base and {prices.L2_GAS_GWEI['Arbitrum']:g} gwei on Arbitrum, "
             f"ETH at ${prices.ETH_USD:,.0f}. Testnet ETH is free; these are the mainnet figures for the same "
             "transactions. The L1 data fee is extra: the last column bounds it from the transaction's size at the "
             f"price of L1 calldata ({prices.L1_GAS_PER_BYTE} gas per byte at {prices.L1_GAS_GWEI:g} gwei); both "
             "chains post compressed batches as blobs, so the fee charged is usually far below the bound.", "",
             "| what | gas | Base | Arbitrum | L1 data at most |", "|---|---|---|---|---|"]
    lines += [f"| {what} | {cells(*ops)} |" for what, ops in rows]
    from proofmarket.core.profiles import PROFILES

    cap = PROFILES["base"].gas.max_fee_gwei
    worst = prices.usd(g["fulfill (steady)"], cap)
    table = prices.l2_usd(g["fulfill (steady)"], "Base")
    lines += ["", f"The fee cap bounds the worst case: at Base's {cap:g} gwei cap a steady fulfilment would cost about "
                  f"{prices.dollars(worst)}, {worst / table:,.0f} times the table."]
    return "\n".join(lines)


def cores(bench: Path) -> str:
    doc = load("cores", bench)
    if doc is None:
        return "_No scaling-with-cores measurement yet (`python bench/cores.py` on a machine of many cores)._"
    parts = []
    for row in doc["rows"]:
        raw, node = row.get("raw") or {}, row.get("node") or {}
        if raw.get("per_s") and node.get("per_s") is not None:
            parts.append(f"{row['model']} at {row['workers']} worker(s): {node['per_s']}/s, raw EZKL {raw['per_s']}/s "
                         f"(ratio {node['per_s'] / raw['per_s']:.2f})")
    return (f"On {doc['machine']['cpu_count']} cores (`bench/cores.md`, {when(doc)}; the Celery engine, N `proofmarket "
            f"worker` processes beside N raw EZKL processes on the same circuits, {doc['threads']} EZKL threads "
            f"each): " + "; ".join(parts) + ".")


REGIONS: dict[str, Callable[[Path], str]] = {"results": results, "gas": gas, "latency": latency, "http": http,
                                             "throughput": throughput, "chain_costs": chain_costs,
                                             "batch_gas": batch_gas, "cli": cli, "cores": cores}
# the files whose measured regions are rendered here (each holds some of REGIONS)
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))  # the README and the docs site's pages


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
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        new = render(text)
        if new != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print(f"{', '.join(map(str, stale))} quote numbers the bench files do not hold: run python bench/readme.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
