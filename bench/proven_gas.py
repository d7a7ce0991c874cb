"""Gas of an x402 ``proven`` call (a payment only a proof the chain verified can capture), single and batched,
beside the escrowed call it replaces, on one anvil with real proofs.

The sample MLP (public profile, bench/gas.py's fixed candidate) is compiled with batch circuits of the sizes asked
(default 4, 8); the market is deployed, the model listed with its own verifier and its batch verifiers, the prover
staked. Then, after one warm-up call of each kind (a fresh market's first settlement pays one-time storage writes):

- escrow, K = 1: the consumer's ``requestInference`` (approve skipped: the allowance lasts), the node's
  ``acceptRequest`` and ``fulfill``: three transactions;
- proven, K = 1: the node's ``fulfillAuthorized`` (the payer signs and sends nothing): one transaction that verifies
  the proof, pulls the authorization, splits the price and returns the rest;
- proven, K in the sizes: ``fulfillAuthorizedBatch`` of K calls proven in one proof of the batch circuit of K: the
  transaction's gas / K per call.

    python bench/proven_gas.py [--sizes 4,8] [--out bench]

Writes OUT/proven_gas.json and OUT/proven_gas.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch_gas import compile_model, inputs  # bench/batch_gas.py: the same compile and inputs

from proofmarket.chain import Devnet, advance_time
from proofmarket.chain.commitments import model_id_for
from proofmarket.core.settings import Settings
from proofmarket.onchain import Market
from proofmarket.systems.workspace import Workspace

PRICE = "1"


def log(text: str) -> None:
    print(f"[proven-gas] {text}", file=sys.stderr, flush=True)


def _proven(market: Market, onchain_id: bytes, bundle: Any, max_amount: int) -> Any:
    """One signed proven call for this bundle's input (the consumer's own commitment: the bundle's input)."""
    now = market.client.timestamp()
    return market.market.sign_proven_call(
        market.accounts.consumer, onchain_id, bytes.fromhex(bundle.input.commitment.removeprefix("0x")), max_amount,
        market.accounts.prover.address, valid_before=now + 3_600, valid_after=now - 1)


def _proof(market: Market, model_id: str, bundle: Any, verifier: str) -> tuple[bytes, list[int]]:
    proof = market.chain_proof(model_id, verifier, bytes.fromhex(bundle.proof.hex.removeprefix("0x")))
    return proof, [int(v, 16) for v in bundle.proof.instances]


def measure(market: Market, model_id: str, sizes: tuple[int, ...]) -> dict[str, Any]:
    registration = market.register_model(model_id, PRICE, 7_000)
    price = registration.spec.price
    onchain_id = model_id_for(registration.owner, model_id)
    market.setup_prover()
    market.stake_prover(max(sizes, default=1) * market.market.params().claim_bond)
    market.usdc.approve(market.market.address, 10**12, market.accounts.consumer)
    advance_time(market.client, 2)  # the batch verifiers registered before any authorization's validAfter
    prover = market.workspace.prover
    rows: list[dict[str, Any]] = []
    for attempt in ("warm-up", "steady"):  # escrow, K = 1
        receipt = market.request(model_id, inputs(1)[0])
        claimed = market.claim(market.market.get_request(receipt.request_id))
        result = market.fulfill(receipt.request_id)
        if attempt == "steady":
            parts = {"requestInference": receipt.tx.gas_used, "acceptRequest": claimed.gas_used if claimed else 0,
                     "fulfill": result.settlement.tx.gas_used}
            rows.append({"path": "escrow", "k": 1, "txs": 3, "gas": sum(parts.values()), "parts": parts,
                         "gas_per_call": sum(parts.values()), "ok": result.settlement.valid})
    for attempt in ("warm-up", "steady"):  # proven, K = 1
        bundle = prover.prove(model_id, inputs(1)[0]).bundle
        proof, instances = _proof(market, model_id, bundle, registration.spec.verifier)
        settled = market.market.fulfill_authorized(_proven(market, onchain_id, bundle, price), proof, instances,
                                                   market.accounts.prover)
        if attempt == "steady":
            rows.append({"path": "proven", "k": 1, "txs": 1, "gas": settled.tx.gas_used,
                         "gas_per_call": settled.tx.gas_used, "ok": settled.valid})
    for k in sizes:  # proven, batched
        proved = prover.prove_together(model_id, inputs(k), k)
        batch = proved[0].bundle
        verifier = str(market.registry.batch_verifier(onchain_id, k).address)
        proof, instances = _proof(market, model_id, batch, verifier)
        calls = [(_proven(market, onchain_id, r.bundle, price), n) for n, r in enumerate(proved)]
        settled_all = market.market.fulfill_authorized_batch(calls, k, proof, instances, market.accounts.prover)
        gas = settled_all[0].tx.gas_used
        rows.append({"path": "proven, batched", "k": k, "txs": 1, "gas": gas, "gas_per_call": gas // k,
                     "ok": all(s.valid for s in settled_all)})
    for row in rows:
        log(f"{row['path']} K={row['k']}: {row['gas']:,} gas, {row['gas_per_call']:,} per call")
    return {"rows": rows}


def table(doc: dict[str, Any]) -> str:
    lines = ["| path | K (calls in one proof) | transactions | gas | gas per call | valid |",
             "|---|---:|---:|---:|---:|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['path']} | {r['k']} | {r['txs']} | {r['gas']:,} | {r['gas_per_call']:,} | "
                     f"{'yes' if r['ok'] else 'NO'} |")
    escrow = next(r for r in doc["rows"] if r["path"] == "escrow")
    parts = ", ".join(f"{name} {gas:,}" for name, gas in escrow["parts"].items())
    return "\n".join(lines) + f"\n\nThe escrowed call's transactions: {parts}.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4,8", help="batch circuit sizes (comma-separated)")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    args.out.mkdir(parents=True, exist_ok=True)
    ws = Workspace(Settings(home=(args.out / "proven-gas-home").resolve()))
    try:
        model_id = compile_model(ws, sizes, name="mlp-proven")
        with tempfile.TemporaryDirectory(prefix="proofmarket-proven-gas-") as tmp, Devnet(Path(tmp)) as net:
            market = Market.deploy(workspace=ws, client=net.client())
            doc = measure(market, model_id, sizes)
    finally:
        ws.close()
    doc.update(created_at=datetime.now(UTC).isoformat(timespec="seconds"), sizes=list(sizes),
               machine={"python": platform.python_version(), "platform": platform.platform()})
    (args.out / "proven_gas.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = ("# Gas of an x402 proven call\n\nSample MLP, public profile, anvil, real proofs, steady state.\n\n"
          + table(doc) + "\nA proven call is one transaction, sent by the node: the payer signs an authorization and "
          "sends nothing. The market verifies the proof before the authorization moves; an invalid proof reverts and "
          "moves nothing.\n")
    (args.out / "proven_gas.md").write_text(md)
    print(md)
    return 0 if all(r["ok"] for r in doc["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
