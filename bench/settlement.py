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
import time
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
    """``CLIENTS`` fresh payers with USDC for their calls and the channel deposits the node asks for (its minDeposit
    hint, ``PROOFMARKET_CHANNEL_MIN_DEPOSIT_CALLS`` calls), from the consumer's USDC."""
    from eth_account import Account
    from eth_utils.crypto import keccak

    from proofmarket.core.settings import X402Settings

    accounts = [Account.from_key(keccak(PAYER_SEED + f"{tag}-{i}".encode())) for i in range(CLIENTS)]
    for account in accounts:
        deposits = X402Settings().channel_min_deposit_calls * (calls // X402Settings().channel_min_deposit_calls + 1)
        market.usdc.transfer(account.address, price * (max(calls, deposits) + 10), market.accounts.consumer)
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


def quiet(client: Any, still_s: float = 3.0, limit_s: float = 60.0) -> None:
    """Wait until no block was mined for ``still_s`` (anvil automines: no transaction is in flight)."""
    deadline = time.monotonic() + limit_s
    last, since = client.block_number(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < still_s:
        time.sleep(0.25)
        now = client.block_number()
        if now != last:
            last, since = now, time.monotonic()


def client_process(key: bytes, scheme: str, network: str, calls: int, usdc: str, url: str, doc: dict[str, Any],
                   ready: Any, go: Any, results: Any) -> None:
    """One paying client in its own process (as payers are): ready, wait for the start, make ``calls`` calls."""
    from eth_account import Account

    session = session_for(Account.from_key(key), scheme, network, calls, usdc)
    latencies: list[float] = []
    errors: list[str] = []
    ready.release()
    go.wait()
    for _ in range(calls):
        start = time.perf_counter()
        try:
            answer = session.post(url, json=doc, timeout=300)
            if answer.status_code == 200 and answer.json()["payment"]["scheme"] == scheme:
                latencies.append(time.perf_counter() - start)
            else:
                errors.append(f"{answer.status_code}: {answer.text[:160]}")
        except Exception as exc:  # counted; the phase goes on
            errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
    results.put((latencies, errors))


def phase(base_url: str, client: Any, accounts: list[Any], scheme: str, network: str, usdc: str, model_id: str,
          doc: dict[str, Any], calls: int, sweep: Any = None) -> dict[str, Any]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # the node runs threads here: never fork it
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    url = f"{base_url}/v1/models/{model_id}/infer"
    workers = [context.Process(target=client_process, args=(bytes(a.key), scheme, network, calls, usdc, url, doc,
                                                            ready, go, results), daemon=True) for a in accounts]
    for w in workers:
        w.start()
    for _ in workers:  # every client has imported the SDK and built its session
        ready.acquire()
    quiet(client)  # the previous phase's background transactions (split releases) are mined before this one
    log(f"{scheme}: {CLIENTS} clients x {calls} calls")
    first = client.block_number() + 1
    start = time.perf_counter()
    go.set()
    latencies: list[float] = []
    errors: list[str] = []
    for _ in workers:
        done, failed = results.get(timeout=1800)
        latencies += done
        errors += failed
    for w in workers:
        w.join(30)
    calls_done = client.block_number()
    swept = sweep() if sweep is not None else None
    wall = time.perf_counter() - start
    sweep_gas, sweep_txs = gas_between(client, calls_done + 1, client.block_number()) if swept else (0, 0)
    gas, txs = gas_between(client, first, client.block_number())
    ok = len(latencies)
    ordered = sorted(latencies)
    row = {"scheme": scheme, "clients": CLIENTS, "calls": CLIENTS * calls, "ok": ok, "failures": len(errors),
           "wall_s": round(wall, 3), "calls_per_s": round(ok / wall, 2) if wall else None,
           "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1) if ordered else None,
           "gas_total": gas, "transactions": txs, "gas_per_call": round(gas / ok) if ok else None,
           "transactions_per_1000_calls": round(txs * 1000 / ok, 1) if ok else None, "errors": errors[:5],
           "sweep": ({k: swept[k] for k in ("amount", "claim_txs", "settle_tx", "status")}
                     | {"gas": sweep_gas, "transactions": sweep_txs}) if swept else None}
    log(f"{scheme}: {row['calls_per_s']} calls/s, {row['gas_per_call']} gas/call, {txs} transactions, "
        f"{len(errors)} failures")
    return row


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from proofmarket.chain import Devnet, find_anvil
    from proofmarket.onchain import Market
    from proofmarket.systems.workspace import Workspace

    demo = Demo(args.home, tmp)
    with demo.stack:
        # a block every --block-time s (Base's is 2 s): what a payment that settles per call waits for; 0: automine
        block = ("--block-time", str(args.block_time)) if args.block_time else ()
        devnet = Devnet(tmp / "devnet", anvil=find_anvil(), extra_args=block)
        # one sweep per phase, at its end (the default policy sweeps every 300 s or 10 USDC: more claims)
        os.environ.setdefault("PROOFMARKET_CHANNEL_SWEEP_THRESHOLD_ATOMIC", str(10**15))
        os.environ.setdefault("PROOFMARKET_CHANNEL_SWEEP_INTERVAL_S", "86400")
        # a node refuses a sweep interval over half the payer's withdrawal delay (the payer could leave first)
        os.environ.setdefault("PROOFMARKET_CHANNEL_WITHDRAW_DELAY_S", "172800")
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
                      model_id, doc, args.calls if not args.batch_only else 1)
        batch_rail = next(r for r in services.rails.all() if r.name == "batch-settlement")
        batch_calls = args.batch_calls or args.calls
        batch = phase(base_url, client, payers(market, "batch", batch_calls, price), "batch-settlement", network,
                      usdc, model_id, doc, batch_calls, sweep=batch_rail.sweeper.run)
    speedup = (batch["calls_per_s"] or 0) / exact["calls_per_s"] if exact["calls_per_s"] else None
    return {"machine": machine_info(), "commit": commit(), "model_id": model_id, "price_atomic": price,
            "config": {"clients": CLIENTS, "calls_per_client": args.calls, "batch_calls_per_client": batch_calls,
                       "block_time_s": args.block_time},
            "exact": exact, "batch": batch,
            "speedup": round(speedup, 2) if speedup else None,
            "targets": {"speedup": "PASS" if speedup and speedup >= SPEEDUP_TARGET else "MISS",
                        "gas_per_call": "PASS" if (batch["gas_per_call"] or GAS_TARGET) < GAS_TARGET else "MISS"}}


def markdown(doc: dict[str, Any]) -> str:
    m, e, b = doc["machine"], doc["exact"], doc["batch"]
    lines = [
        "# proofmarket bench: settlement, x402 exact vs batch-settlement (sample MLP, cached proofs)",
        "",
        f"{m['date']} · commit {doc['commit']} · {m['cpu_count']} CPUs · {m['platform']} · {CLIENTS} clients x "
        f"{doc['config']['calls_per_client']} exact and {doc['config']['batch_calls_per_client']} batch-settlement "
        f"calls · price {doc['price_atomic']} atomic USDC · devnet "
        f"(anvil, a block every {doc['config']['block_time_s']:g} s; 0 = automine), in-process facilitator, clients "
        "in their own processes (the x402 SDK's client)",
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
              "batch-settlement's phase includes its one sweep (claims, the settle to the node's account, the payout "
              "to the model's payee) in both its time and its gas"
              + (f" (the sweep: {b['sweep']['transactions']} transactions, {b['sweep']['gas']:,} gas)" if b["sweep"]
                 else "") + "; its other transactions are the clients' deposits. exact's are one transfer per call "
              "(plus the listing's split releases). The node sweeps every PROOFMARKET_CHANNEL_SWEEP_INTERVAL_S or "
              "PROOFMARKET_CHANNEL_SWEEP_THRESHOLD_ATOMIC: more sweeps cost more claim gas per call.",
              "",
              "Why exact is slow here: each exact call waits for its transfer to be mined (and the facilitator's "
              "receipt) in one of the node's runner threads (PROOFMARKET_PROVER_WORKERS, 2), so its calls per second "
              "are about the runner threads over the block time; a batch-settlement call waits for no transaction "
              "(only a client's first call waits for its deposit), so it is bound by the node's CPU."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=20, help="calls per client (exact; batch-settlement too unless "
                                                             "--batch-calls)")
    parser.add_argument("--batch-calls", type=int, default=50,
                        help="calls per client on batch-settlement (a deposit covers the minDeposit: 50 calls)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="results directory")
    parser.add_argument("--batch-only", action="store_true", help="one exact call per client (profiling the other)")
    parser.add_argument("--block-time", type=float, default=2.0, help="seconds per block (0: automine)")
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
