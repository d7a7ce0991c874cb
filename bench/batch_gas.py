"""Gas per escrow request when K requests of one model are settled by one batch proof (fulfillBatch), real proofs.

The sample MLP (public profile, the fixed candidate of bench/gas.py) is compiled with batch circuits of the sizes
asked (default 4, 8, 16), on a fresh anvil: the market is deployed, the model listed with its own verifier and its
batch verifiers, then for each K: K requests are escrowed, claimed, proven in one proof of the batch circuit of K and
settled by one fulfillBatch (K = 1: the model's own circuit and fulfill). Gas per request = the settling
transaction's gas / K (the claims, one acceptRequest each, are listed apart: they are the same with or without
batching). Also: the listing's gas (the model's verifier, register, and each batch verifier deployed and registered).

    python bench/batch_gas.py [--sizes 4,8,16] [--out bench]

Also: a listing's gas with its own verifier, and on the shared verifier (the first on the chain, and one more).

Writes OUT/batch_gas.json and OUT/batch_gas.md. Targets (issue 36): <= 150k gas per request at K = 8; a listing on an
existing shared verifier <= 20% of one with its own verifier.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proofmarket.chain import Devnet, advance_time, find_anvil
from proofmarket.core.settings import Settings
from proofmarket.onchain import Market
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

TARGET_K, TARGET_GAS = 8, 150_000
SHARED_TARGET = 0.20  # a listing on an existing shared verifier, as a share of one with its own verifier
CANDIDATE = (256, 3, 10, 1)  # bench/gas.py's fixed MLP candidate (one inner column: the smallest verifier)


def log(text: str) -> None:
    print(f"[batch-gas] {text}", file=sys.stderr, flush=True)


def inputs(k: int) -> list[dict[str, Any]]:
    samples = json.loads(sample_path("mlp", "samples").read_text())["inputs"]
    return [{"inputs": samples[i % len(samples)]} for i in range(k)]


def compile_model(ws: Workspace, sizes: tuple[int, ...], name: str = "mlp") -> str:
    samples = json.loads(sample_path("mlp", "samples").read_text())
    options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(ws.settings.srs_dir),
                             candidates=[Candidate(*CANDIDATE)], batch_sizes=sizes, name=name)
    started = time.perf_counter()
    result = ws.prover.compile(sample_path("mlp"), samples, options, progress=log)
    log(f"compiled in {time.perf_counter() - started:.1f} s -> {result.model_id}")
    return result.model_id


def listing_gas(market: Market, others: list[str]) -> dict[str, int]:
    """A model's listing with its own verifier vs on the shared verifier: the first on the chain (deploys the reusable
    verifier) and one on the existing shared verifier (a VKA registration and a clone), register included."""
    out = {}
    for label, model_id, kind in (("own verifier (deploy + register)", others[0], "own"),
                                  ("shared verifier, first on the chain", others[1], "shared"),
                                  ("shared verifier, on the existing one", others[2], "shared")):
        reg = market.register_model(model_id, "1", 7_000, verifier=kind)
        out[label] = (reg.verifier.gas_used if reg.verifier else 0) + (reg.tx.gas_used if reg.tx else 0)
        log(f"listing, {label}: {out[label]:,} gas")
    return out


def measure(market: Market, model_id: str, sizes: tuple[int, ...]) -> dict[str, Any]:
    registration = market.register_model(model_id, "1", 7_000)
    listing = {"verifier deploy": registration.verifier.tx.gas_used if registration.verifier and
               registration.verifier.tx else 0, "register": registration.tx.gas_used if registration.tx else 0}
    manifest, _ = market.workspace.prover.model(model_id)
    for circuit in manifest.batches:
        if circuit.size in registration.batch_verifiers:
            record = market.home.verifier(market.client.chain_id, f"{model_id}#batch{circuit.size}")
            listing[f"batch verifier deploy (K={circuit.size})"] = record.gas_used if record else 0
    market.stake_prover(max(sizes, default=1) * market.market.params().claim_bond)  # a claim bond per request
    advance_time(market.client, 1)
    rows = []
    for k in (1, *sizes):
        receipts = [market.request(model_id, doc) for doc in inputs(k)]
        ids = [r.request_id for r in receipts]
        started = time.perf_counter()
        results = {ids[0]: market.fulfill(ids[0])} if k == 1 else market.fulfill_batch(ids)
        elapsed = time.perf_counter() - started
        settlement = results[ids[0]].settlement
        ok = all(r.settlement.valid for r in results.values())
        gas = settlement.tx.gas_used
        rows.append({"k": k, "ok": ok, "settle_gas": gas, "gas_per_request": gas // k,
                     "calldata_bytes": _calldata(market, settlement.tx.tx_hash),
                     "prove_and_settle_s": round(elapsed, 3)})
        log(f"K={k}: {gas:,} gas, {gas // k:,} per request ({'valid' if ok else 'REJECTED'})")
    return {"listing": listing, "rows": rows}


def _calldata(market: Market, tx_hash: str) -> int:
    tx = market.client.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    return len(bytes(tx["input"]))


def table(doc: dict[str, Any]) -> str:
    lines = ["| K (requests in one proof) | settling tx gas | gas per request | calldata bytes | prove + settle (s) |",
             "|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        lines.append(f"| {r['k']}{'' if r['ok'] else ' (rejected)'} | {r['settle_gas']:,} | {r['gas_per_request']:,} "
                     f"| {r['calldata_bytes']:,} | {r['prove_and_settle_s']:.2f} |")
    target = next((r for r in doc["rows"] if r["k"] == TARGET_K), None)
    verdict = ("not measured" if target is None else
               f"{'PASS' if target['gas_per_request'] <= TARGET_GAS else 'MISS'} ({target['gas_per_request']:,})")
    lines += ["", f"Target: <= {TARGET_GAS:,} gas per request at K = {TARGET_K}: {verdict}.", "",
              "| listing step | gas |", "|---|---:|"]
    lines += [f"| {step} | {gas:,} |" for step, gas in doc["listing"].items()]
    listings = doc.get("listings") or {}
    if listings:
        own = listings["own verifier (deploy + register)"]
        shared = listings["shared verifier, on the existing one"]
        lines += ["", "| a listing of the sample MLP | gas | vs its own verifier |", "|---|---:|---:|"]
        lines += [f"| {label} | {gas:,} | {gas / own:.0%} |" for label, gas in listings.items()]
        lines += ["", f"Target: a listing on an existing shared verifier <= {SHARED_TARGET:.0%} of today's (own "
                      f"verifier): {'PASS' if shared <= SHARED_TARGET * own else 'MISS'} ({shared / own:.1%})."]
    return "\n".join(lines) + "\n"


LEGEND = """
The listings: the model's own verifier is deployed per listing (EZKL's Halo2Verifier with its verification key
inside); a listing on the shared verifier registers the model's verification-key artifact (VKA) on EZKL's reusable
verifier (deployed once per chain, found by its code hash) and clones the market's SharedVerifier pinning the VKA's
digest (`proofmarket model register --verifier shared`). Each verification through the shared verifier carries the
VKA as calldata: `compile` prints both costs per call.

K = 1 is `fulfill` with the model's own circuit. K > 1 is one `fulfillBatch`: one `verifyProof` of the batch circuit
of K calls (its verifier checks K times the instances), then each request bound to its slot and credited as `fulfill`
credits it. Each request's claim (`acceptRequest`, the same with or without batching) is not counted. The batch
verifiers are deployed once per model and size, at listing (`proofmarket model register`).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4,8,16")
    ap.add_argument("--out", type=Path, default=Path("bench"))
    args = ap.parse_args(argv)
    sizes = tuple(sorted({int(s) for s in args.sizes.split(",") if s.strip()}))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="proofmarket-batch-gas-") as tmp:
        ws = Workspace(Settings(home=Path(tmp) / "home"))
        try:
            model_id = compile_model(ws, sizes)
            others = [compile_model(ws, (), f"mlp-{n}") for n in ("own", "shared-1", "shared-2")]
            with Devnet(Path(tmp) / "devnet", anvil=find_anvil()) as net:
                market = Market.deploy(workspace=ws, client=net.client())
                doc = measure(market, model_id, sizes)
                doc["listings"] = listing_gas(market, others)
        finally:
            ws.close()
    doc = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "model": "mlp", "sizes": list(sizes),
           "target": {"k": TARGET_K, "max_gas_per_request": TARGET_GAS},
           "machine": {"python": platform.python_version(), "platform": platform.platform()}, **doc}
    (args.out / "batch_gas.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = "# Gas per escrow request, batched settlement\n\nSample MLP, public profile, anvil, real proofs.\n\n" \
         + table(doc) + LEGEND
    (args.out / "batch_gas.md").write_text(md)
    print(md)
    return 0 if all(r["ok"] for r in doc["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
