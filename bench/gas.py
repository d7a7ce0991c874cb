"""Gas of the on-chain market, per reference model, each on a fresh anvil devnet with real proofs.

For each model (public profile): compile (cached in OUT/gas-home), start anvil, deploy the market
contracts (TestUSDC, ModelRegistry, InferenceMarket), deploy the model's Halo2Verifier and register
the model, escrow a request (approve + requestInference), fulfil it with a real proof (the first
fulfilment on a fresh market) and once more with the same proof on a second request (steady state:
the platform balance and the counters are no longer zero), and estimate ``verifyProof`` alone.

    --grid fixed    one good candidate per model, chosen for a small verifier (one inner column)
    --grid default  (default) the settings 'proofmarket compile' picks (default tuning grid, fastest proof)

Writes OUT/gas.json and OUT/gas.md and prints the table. Target (issue 3): fulfil of the reference MLP
<= 900k gas (checked on the first, dearer fulfilment). Exit 0 even when the target is missed (MISS);
1 when a model could not be measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proofmarket.chain import ChainClient, Devnet, find_anvil
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.market import Market
from proofmarket.samples import SAMPLES, sample_path
from proofmarket.systems.ezkl import ezkl_calls, tuning
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.ezkl.verify import load_manifest
from proofmarket.systems.workspace import Workspace

FULFIL_TARGET = 900_000
TARGET_MODEL = "mlp"
# (decomposition base, legs, scale, inner columns): accurate within the default bound, one inner column
# (the fewest advice columns: the smallest proof and verifier, see the report in gas.md).
FIXED_CANDIDATES = {"mlp": (256, 3, 10, 1), "cnn": (256, 3, 7, 1), "logreg": (256, 2, 7, 1)}
CONTRACTS = ("USDC", "ModelRegistry", "InferenceMarket")
PRICE = "1"


def log(text: str) -> None:
    print(f"[gas] {text}", file=sys.stderr, flush=True)


@dataclass
class Row:
    model: str
    settings: str = ""
    logrows: int | None = None
    verifier_bytes: int | None = None
    proof_bytes: int | None = None
    instances: int | None = None
    gas: dict[str, int] = field(default_factory=dict)
    fulfil_ok: bool | None = None
    target: str = "n/a"
    error: str | None = None


def _compile_inputs(name: str) -> str:
    """A digest of what decides a compile: the ONNX bytes, the tuning grid, the EZKL version."""
    grid = (tuning.DEFAULT_DECOMPOSITIONS, tuning.DEFAULT_SCALES, tuning.DEFAULT_COLUMNS, tuning.REBASE_MULTIPLIERS)
    blob = sample_path(name).read_bytes() + repr(grid).encode() + ezkl_calls.EZKL_VERSION.encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def compile_model(ws: Workspace, name: str, grid: str, recompile: bool) -> str:
    """Compile ``name`` (public profile), reusing an earlier compile of the same ONNX file, grid and tuner."""
    index_path = ws.settings.home / "gas-models.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    key = f"{name}:{grid}:{FIXED_CANDIDATES[name] if grid == 'fixed' else 'default'}:{_compile_inputs(name)}"
    if not recompile and key in index and ws.store.has(index[key]):
        return str(index[key])
    samples = json.loads(sample_path(name, "samples").read_text())
    candidates = [Candidate(*FIXED_CANDIDATES[name])] if grid == "fixed" else None  # None: the default grid
    options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(ws.settings.srs_dir), candidates=candidates,
                             name=name)
    started = time.perf_counter()
    model_id = ws.prover.compile(sample_path(name), samples, options).model_id
    log(f"{name}: compiled in {time.perf_counter() - started:.1f} s -> {model_id}")
    index[key] = model_id
    index_path.write_text(json.dumps(index, indent=2))
    return model_id


def deployment_gas(client: ChainClient, market: Market) -> dict[str, int]:
    """Gas of each market contract's creation, read back from the blocks the deployment file names."""
    gas = {}
    for name in CONTRACTS:
        deployed = market.deployment.contracts[name]
        for tx_hash in client.w3.eth.get_block(deployed.block)["transactions"]:
            receipt = client.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            if receipt["contractAddress"] == deployed.address:
                gas[f"deploy {name}"] = int(receipt["gasUsed"])
    return gas


def measure(ws: Workspace, name: str, model_id: str, work: Path) -> Row:
    manifest = load_manifest(ws.store, model_id)
    row = Row(name, manifest.tuning["picked"], manifest.logrows, manifest.verifier.deployed_size)
    doc = json.loads(sample_path(name, "input").read_text())
    with Devnet(work / f"devnet-{name}") as net:
        client = net.client()
        market = Market.deploy(workspace=ws, client=client)
        row.gas.update(deployment_gas(client, market))
        registration = market.register_model(model_id, PRICE)
        assert registration.verifier is not None and registration.verifier.tx is not None
        assert registration.tx is not None
        row.gas["deploy verifier"] = registration.verifier.tx.gas_used
        row.gas["register"] = registration.tx.gas_used
        receipt = market.request(model_id, doc)
        row.gas["approve"] = receipt.approve_tx.gas_used if receipt.approve_tx else 0
        row.gas["requestInference"] = receipt.tx.gas_used
        claimed = market.claim(market.market.get_request(receipt.request_id))
        assert claimed is not None
        row.gas["acceptRequest"] = claimed.gas_used
        result = market.fulfill(receipt.request_id)
        row.fulfil_ok = result.settlement.valid
        row.gas["fulfill (first)"] = result.settlement.tx.gas_used
        bundle = ProofBundle.parse(ws.store.get_json(result.bundle_cid))
        second = market.request(model_id, doc)
        row.gas["fulfill (steady)"] = market.submit_proof(second.request_id, bundle).tx.gas_used
        row.gas["verifyProof alone"] = int(client.rpc(
            "eth_estimateGas", [{"to": registration.spec.verifier, "data": bundle.proof.evm_calldata}]), 16)
        row.proof_bytes = len(bundle.proof.hex) // 2 - 1
        row.instances = len(bundle.proof.instances)
    if name == TARGET_MODEL:
        row.target = "PASS" if row.fulfil_ok and row.gas["fulfill (first)"] <= FULFIL_TARGET else "MISS"
    return row


COLUMNS = ("deploy verifier", "register", "approve", "requestInference", "acceptRequest", "fulfill (first)",
           "fulfill (steady)", "verifyProof alone")


LEGEND = """
Each figure is the transaction's gasUsed. `fulfill (first)`: the first fulfilment on a fresh market (it
pays for one-time zero-to-non-zero storage writes: the target is checked on it); `fulfill (steady)`: a
second request settled with the same proof. `verifyProof alone`: eth_estimateGas of the proof's calldata
sent straight to the model's verifier (21,000 intrinsic + calldata + verification), for the market's
overhead. `approve` is skipped when the allowance already covers the price (or with EIP-3009).
"""


def table(rows: list[Row]) -> str:
    head = ["model", "settings", "logrows", "verifier B", "proof B", *COLUMNS, "fulfil <= 900k"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.error:
            lines.append(f"| {r.model} | {r.settings or '-'} | error: {r.error} |")
            continue
        cells = [r.model, r.settings, str(r.logrows), f"{r.verifier_bytes:,}", f"{r.proof_bytes:,}",
                 *(f"{r.gas[c]:,}" for c in COLUMNS), r.target]
        lines.append("| " + " | ".join(cells) + " |")
    first = next((r for r in rows if not r.error), None)
    if first is not None:
        lines += ["", "| market contract | deploy gas |", "|---|---|"]
        lines += [f"| {c} | {first.gas[f'deploy {c}']:,} |" for c in CONTRACTS]
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    try:
        anvil = subprocess.run([str(find_anvil()), "--version"], capture_output=True, text=True, timeout=30,
                               check=False).stdout.strip().splitlines()[0]
    except (ProofMarketError, OSError, IndexError):
        anvil = None
    return {"platform": platform.platform(), "python": platform.python_version(), "anvil": anvil,
            "evm": "cancun (solcjs, optimizer runs=1)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(SAMPLES), help="comma-separated: mlp,cnn,logreg")
    parser.add_argument("--grid", choices=("fixed", "default"), default="default")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--recompile", action="store_true", help="ignore compiles cached in OUT/gas-home")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SAMPLES))
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    ws = Workspace(Settings(home=(args.out / "gas-home").resolve()))
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="proofmarket-gas-") as tmp:
            for name in names:
                try:
                    model_id = compile_model(ws, name, args.grid, args.recompile)
                    rows.append(measure(ws, name, model_id, Path(tmp)))
                    log(f"{name}: fulfil {rows[-1].gas['fulfill (first)']:,} gas")
                except ProofMarketError as exc:
                    log(f"{name}: {exc.code}: {exc.message}")
                    rows.append(Row(name, error=f"{exc.code}: {exc.message}"))
        doc = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "grid": args.grid,
               "target": {"model": TARGET_MODEL, "fulfill_max_gas": FULFIL_TARGET},
               "machine": machine(), "rows": [r.__dict__ for r in rows]}
    finally:
        ws.close()
    (args.out / "gas.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = f"Gas on anvil ({args.grid} settings), public profile, real proofs.\n\n" + table(rows) + LEGEND
    (args.out / "gas.md").write_text(md)
    print(md)
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
