"""Settlement bench (issue 23): x402 ``exact`` against ``batch-settlement`` on the same node, in the same run.

Cached proofs (the same input every call, proof cache on): what is measured is the payment's path. One paid node on a
devnet (in-process facilitator), the sample MLP registered at the demo's price. For each scheme, 8 clients (threads,
each a fresh funded payer using the x402 SDK's own client with that scheme only) make --calls calls each:

    exact             one EIP-3009 transfer per call, settled before the answer
    batch-settlement  one deposit per client (its first call), a voucher per call; then one sweep: claims (100
                      channels per transaction), the settle to the node's account and one payout per payee

calls/s over the whole phase (the sweep counted in batch-settlement's time), gas per call (every transaction mined in
the phase, from their receipts) and on-chain transactions per 1,000 calls. Targets: batch-settlement >= 10x the calls/s
of exact at 8 clients, < 5,000 gas per call amortised. Writes OUT/settlement.json and OUT/settlement.md (date and
commit); progress on stderr; exit 0 even when a target is missed (MISS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_bench import machine_info, start_node  # noqa: E402

from proofmarket.core.settings import Settings  # noqa: E402
from proofmarket.demo import OWNER_SHARE_BPS, PRICE, Demo, compile_sample  # noqa: E402
from proofmarket.samples import sample_path  # noqa: E402

CLIENTS = 8
SPEEDUP_TARGET = 10.0
GAS_TARGET = 5_000
PAYER_SEED = b"proofmarket-bench-settlement-payer-"


def log(text: str) -> None:
    print(f"[settlement] {text}", file=sys.stderr, flush=True)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def payers(market: Any, tag: str, calls: int, price: int) -> list[Any]:
    """``CLIENTS`` fresh payers with USDC for their calls (and a deposit's slack), from the consumer's USDC."""
    from eth_account import Account
    from eth_utils.crypto import keccak

    accounts = [Account.from_key(keccak(PAYER_SEED + f"{tag}-{i}".encode())) for i in range(CLIENTS)]
    for account in accounts:
        market.usdc.transfer(account.address, price * (calls + 10), market.accounts.consumer)
    return accounts


def session_for(account: Any, scheme: str, network: str, calls: int, usdc: str) -> Any:
    """The x402 SDK's own client (requests), with only ``scheme`` registered, allowed to pay the devnet's USDC."""
    from x402 import x402ClientSync
    from x402.http.clients import x402_requests
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
    from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy
    from x402.mechanisms.evm.exact import register_exact_evm_client

    client = x402ClientSync()
    if scheme == "exact":
        register_exact_evm_client(client, EthAccountSigner(account), networks=network)
    else:  # one deposit for all of this client's calls
        policy = BatchSettlementDepositPolicy(deposit_multiplier=max(3, calls + 1))
        client.register(network, BatchSettlementEvmScheme(account, policy))
    client.set_spend_controls({"allowed_assets": [{"network": network, "asset": usdc}]})
    return x402_requests(client)


def gas_between(client: Any, first: int, last: int) -> tuple[int, int]:
    """(gas used, transactions) of every transaction mined in blocks first..last."""
    gas = txs = 0
    for number in range(first, last + 1):
        block = client.w3.eth.get_block(number, full_transactions=False)
        for tx in block["transactions"]:
            gas += int(client.w3.eth.get_transaction_receipt(tx)["gasUsed"])
            txs += 1
    return gas, txs


def phase(base_url: str, client: Any, accounts: list[Any], scheme: str, network: str, usdc: str, model_id: str,
          doc: dict[str, Any], calls: int, sweep: Any = None) -> dict[str, Any]:
    sessions = [session_for(a, scheme, network, calls, usdc) for a in accounts]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    url = f"{base_url}/v1/models/{model_id}/infer"

    def loop(i: int) -> None:
        for _ in range(calls):
            start = time.perf_counter()
            try:
                answer = sessions[i].post(url, json=doc, timeout=300)
                ok = answer.status_code == 200 and answer.json()["payment"]["scheme"] == scheme
            except Exception as exc:  # counted; the phase goes on
                ok, answer = False, None
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                elif answer is not None:
                    errors.append(f"{answer.status_code}: {answer.text[:160]}")

    log(f"{scheme}: {CLIENTS} clients x {calls} calls")
    first = client.block_number() + 1
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(loop, range(CLIENTS)))
    swept = sweep() if sweep is not None else None
    wall = time.perf_counter() - start
    gas, txs = gas_between(client, first, client.block_number())
    ok = len(latencies)
    ordered = sorted(latencies)
    row = {"scheme": scheme, "clients": CLIENTS, "calls": CLIENTS * calls, "ok": ok, "failures": len(errors),
           "wall_s": round(wall, 3), "calls_per_s": round(ok / wall, 2) if wall else None,
           "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1) if ordered else None,
           "gas_total": gas, "transactions": txs, "gas_per_call": round(gas / ok) if ok else None,
           "transactions_per_1000_calls": round(txs * 1000 / ok, 1) if ok else None, "errors": errors[:5],
           "sweep": {k: swept[k] for k in ("amount", "claim_txs", "settle_tx", "status")} if swept else None}
    log(f"{scheme}: {row['calls_per_s']} calls/s, {row['gas_per_call']} gas/call, {txs} transactions, "
        f"{len(errors)} failures")
    return row


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from proofmarket.chain import Devnet, find_anvil
    from proofmarket.market import Market
    from proofmarket.systems.workspace import Workspace

    demo = Demo(args.home, tmp)
    with demo.stack:
        devnet = Devnet(tmp / "devnet", anvil=find_anvil())
        demo.step("start devnet", devnet.start, 60)
        demo.stack.callback(devnet.stop)
        settings = Settings(home=args.home, rpc_url=devnet.rpc_url, database_url=f"sqlite:///{tmp / 'node.db'}",
                            deployment_file=tmp / "deployment.json", payments="on", prover_workers=1,
                            escrow_watcher="off")  # the proof cache stays on: the same input every call
        ws = Workspace(settings)
        demo.stack.callback(ws.close)
        market = demo.step("deploy contracts", lambda: Market.deploy(workspace=ws), 120)
        model_id = demo.step("compile model", lambda: compile_sample(ws), 1200)
        demo.step("register model", lambda: market.register_model(model_id, PRICE, OWNER_SHARE_BPS), 120)
        doc = json.loads(sample_path("mlp", "input").read_text())
        apps: list[Any] = []
        base_url = demo.step("start node", lambda: start_node(demo.stack, settings, model_id, market, apps), 60)
        services = apps[0].state.services
        client = market.client
        network = f"eip155:{client.chain_id}"
        price = market.registry.get_model(market.onchain_id(model_id)).spec.price
        usdc = market.usdc.address
        warm = session_for(market.accounts.consumer, "exact", network, 1, usdc).post(
            f"{base_url}/v1/models/{model_id}/infer", json=doc, timeout=600)  # proves once: the cache answers after
        log(f"warm call: {warm.status_code}")
        exact = phase(base_url, client, payers(market, "exact", args.calls, price), "exact", network, usdc,
                      model_id, doc, args.calls)
        batch_rail = next(r for r in services.rails.all() if r.name == "batch-settlement")
        batch = phase(base_url, client, payers(market, "batch", args.calls, price), "batch-settlement", network,
                      usdc, model_id, doc, args.calls, sweep=batch_rail.sweeper.run)
    speedup = (batch["calls_per_s"] or 0) / exact["calls_per_s"] if exact["calls_per_s"] else None
    return {"machine": machine_info(), "commit": commit(), "model_id": model_id, "price_atomic": price,
            "config": {"clients": CLIENTS, "calls_per_client": args.calls}, "exact": exact, "batch": batch,
            "speedup": round(speedup, 2) if speedup else None,
            "targets": {"speedup": "PASS" if speedup and speedup >= SPEEDUP_TARGET else "MISS",
                        "gas_per_call": "PASS" if (batch["gas_per_call"] or GAS_TARGET) < GAS_TARGET else "MISS"}}


def markdown(doc: dict[str, Any]) -> str:
    m, e, b = doc["machine"], doc["exact"], doc["batch"]
    lines = [
        "# proofmarket bench: settlement, x402 exact vs batch-settlement (sample MLP, cached proofs)",
        "",
        f"{m['date']} · commit {doc['commit']} · {m['cpu_count']} CPUs · {m['platform']} · {CLIENTS} clients x "
        f"{doc['config']['calls_per_client']} calls per scheme · price {doc['price_atomic']} atomic USDC · devnet "
        "(anvil, automine), in-process facilitator",
        "",
        "| scheme | calls ok | failures | wall s | calls/s | p50 ms | gas per call | transactions "
        "| tx per 1,000 calls |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (e, b):
        lines.append(f"| {r['scheme']} | {r['ok']} | {r['failures']} | {r['wall_s']} | {r['calls_per_s']} | "
                     f"{r['p50_ms']} | {r['gas_per_call']} | {r['transactions']} | "
                     f"{r['transactions_per_1000_calls']} |")
    lines += ["",
              f"batch-settlement / exact calls per second: **{doc['speedup']}x** (target >= {SPEEDUP_TARGET:g}x at "
              f"{CLIENTS} clients): **{doc['targets']['speedup']}**; batch-settlement gas per call amortised: "
              f"**{b['gas_per_call']}** (target < {GAS_TARGET:,}): **{doc['targets']['gas_per_call']}**.",
              "",
              "batch-settlement's phase includes its sweep (claims, the settle to the node's account, the payout to "
              "the model's payee) in both its time and its gas; its transactions are one deposit per client plus "
              "the sweep's. exact's are one transfer per call."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=25, help="calls per client per scheme")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="results directory")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("PROOFMARKET_HOME", ".demo")),
                        help="data folder (store, SRS cache), shared with make demo")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pm-settlement-") as tmp:
        doc = run(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "settlement.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    (args.out / "settlement.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
