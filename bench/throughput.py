"""Throughput bench (issue 36): verified inferences per second through one node, paid on batch-settlement channels.

In one run on the sample MLP (the default settings grid), on a devnet with automine:

    1. the reference: raw EZKL through the node's own prover, back to back in one warm prover process
       (``Workspace.prove``: witness, proof, self-verification, calldata, bundle), proofs per second; on each batch
       circuit; and in the node's layout (``raw_layout``: for each --workers count above one, that many prover
       processes of cores // workers EZKL threads side by side, as the local engine runs them), before the nodes and
       after them; "raw best" is the best of these, the ceiling each node row is compared with
    2. for each prover-worker count (--workers, default 1 and 2) a node (the app ``create_app`` builds, served by
       uvicorn in this process, proof cache off) and for each concurrency (--levels, default 1, 8, 32, 64) that many
       paying clients, each in its own process with the x402 SDK's own client on a batch-settlement channel (its
       deposit made by a warm-up call before the clock starts); every call sends a distinct input, so every answer
       is a fresh proof, verified by the node before it answers (the prover's self-check) and checked by the client
       (a 200 paid on its channel, with a proof bundle for its own input commitment)

    3. one caller with many calls at once (``--caller-levels``, default 8 and 32 in flight; an agent scoring a
       batch): one API key drawing on prepaid credits, its calls sent from threads of one client process, on the
       node with the most provers and the longest batch window; a caller's own calls may share a proof (strangers'
       never do: a shared proof's instances show every slot), so this is where batch circuits serve

Per level: verified inferences per second over the level's wall time, p50 / p95 latency, failures; the node's proof
time (ezkl.prove inside its worker) p50. Writes OUT/throughput.json and OUT/throughput.md; progress on stderr; exit 0
even when a target is missed (MISS). The clients run on the same machine as the node (2 cores here): what they spend
signing vouchers is taken from the node.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_bench import machine_info, pct, start_node  # noqa: E402
from inputs import distinct_input  # noqa: E402
from settlement import commit, quiet, session_for  # noqa: E402

from proofmarket.core.settings import Settings  # noqa: E402
from proofmarket.demo import OWNER_SHARE_BPS, PRICE, Demo, compile_sample  # noqa: E402
from proofmarket.samples import sample_path  # noqa: E402
from proofmarket.systems.ezkl.profile import PrivacyProfile  # noqa: E402

TARGET_RATIO = 0.9  # the node at concurrency 32: at least this share of raw EZKL's best rate on the same circuits
TARGET_LEVEL = 32
BATCH_COST_TARGET_MS = 10.0  # what batching may add to a lone caller's p50 (interleaved runs)
LONE_ROUNDS, LONE_CALLS = 3, 16  # the lone caller's latency: rounds of (off, on), calls per node a round
PAYER_SEED = b"proofmarket-bench-throughput-payer-"
CALLER_SEED = b"proofmarket-bench-throughput-caller-"
CALLER_INDEX = 777  # the one caller's inputs (distinct from every client's)
CALLER_WINDOW_MS = 10.0  # the one caller's node batches (at least this window)
SCHEME = "batch-settlement"
# calls per client at least: with two, a level is mostly its ramp (every client's first call queued at once, then the
# queue draining), and 32 clients measured 0.59 of raw EZKL where the same node measured 0.79 with four
CALLS_PER_CLIENT = 4


def log(text: str) -> None:
    print(f"[throughput] {text}", file=sys.stderr, flush=True)


def raw_rate(ws: Any, model_id: str, doc: dict[str, Any], n: int) -> dict[str, Any]:
    """Raw EZKL through the node's prover: ``n`` distinct proofs back to back in one warm prover process."""
    ws.prove(model_id, doc)
    start = time.perf_counter()
    inner = []
    for i in range(n):
        inner.append(float(ws.prove(model_id, distinct_input(doc, 999, i)).bundle.timings.get("prove_s", 0.0)))
    wall = time.perf_counter() - start
    return {"proofs": n, "wall_s": round(wall, 3), "per_s": round(n / wall, 2),
            "ezkl_prove_p50_s": round(statistics.median(inner), 4)}


def raw_layout(ws: Any, model_id: str, doc: dict[str, Any], workers: int, n: int, k: int = 1) -> dict[str, Any]:
    """Raw EZKL in the node's layout: ``workers`` prover processes of cores // ``workers`` EZKL threads each (what the
    local engine runs by default), each proving ``n`` proofs of ``k`` distinct inputs (1: the model's own circuit, else
    its batch circuit of ``k``) back to back, side by side; calls per second of all together. On a few cores,
    processes with fewer threads prove more than one process with all of them (``bench/cores.md``), so this, not the
    one process, is the ceiling of a node with that many provers."""
    import concurrent.futures

    from proofmarket.systems.ezkl.prover import EzklProver
    from proofmarket.systems.ezkl.worker import ProofWorker

    threads = max(1, (os.cpu_count() or 1) // workers)
    provers = [EzklProver(ws.store, ws.settings.jobs_dir, ProofWorker(threads=threads)) for _ in range(workers)]

    def prove(i: int, j: int) -> float:
        docs = [distinct_input(doc, 900 + 16 * i + slot, j) for slot in range(k)]
        if k == 1:
            return float(provers[i].prove(model_id, docs[0]).bundle.timings.get("prove_s", 0.0))
        start = time.perf_counter()
        provers[i].prove_together(model_id, docs, k)
        return time.perf_counter() - start

    try:
        for i in range(workers):  # warm: the process started, the keys read
            prove(i, 0)
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            inner = [t for part in pool.map(lambda i: [prove(i, 1 + j) for j in range(n)], range(workers))
                     for t in part]
        wall = time.perf_counter() - start
    finally:
        for prover in provers:
            prover.close()
    return {"workers": workers, "threads": threads, "size": k, "proofs": n * workers, "wall_s": round(wall, 3),
            "calls_per_s": round(n * workers * k / wall, 2), "proof_p50_s": round(statistics.median(inner), 4)}


def together(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One raw layout's rate measured before and after the nodes, taken together (calls over both walls)."""
    calls = (before["proofs"] + after["proofs"]) * before["size"]
    wall = before["wall_s"] + after["wall_s"]
    return {**before, "proofs": before["proofs"] + after["proofs"], "wall_s": round(wall, 3),
            "calls_per_s": round(calls / wall, 2), "before_per_s": before["calls_per_s"],
            "after_per_s": after["calls_per_s"],
            "proof_p50_s": round(statistics.median([before["proof_p50_s"], after["proof_p50_s"]]), 4)}


def both_sides(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One reference from raw EZKL measured before and after the nodes: proofs, wall and rate of both together."""
    proofs, wall = before["proofs"] + after["proofs"], before["wall_s"] + after["wall_s"]
    return {"proofs": proofs, "wall_s": round(wall, 3), "per_s": round(proofs / wall, 2),
            "before_per_s": before["per_s"], "after_per_s": after["per_s"],
            "ezkl_prove_p50_s": round(statistics.median([before["ezkl_prove_p50_s"], after["ezkl_prove_p50_s"]]), 4)}


def raw_batches(ws: Any, model_id: str, doc: dict[str, Any], repeats: int = 3) -> list[dict[str, Any]]:
    """Raw EZKL on each batch circuit of the model: K distinct inputs in one proof (witness, proof, self-verification,
    each slot's bundle), ``repeats`` times; calls per second at the median."""
    rows = []
    for circuit in ws.prover.model(model_id)[0].batches:
        k = circuit.size
        ws.prover.prove_together(model_id, [distinct_input(doc, j, 0) for j in range(k)], k)  # warm: keys read
        walls = []
        for r in range(repeats):
            docs = [distinct_input(doc, j, 1 + r) for j in range(k)]
            start = time.perf_counter()
            ws.prover.prove_together(model_id, docs, k)
            walls.append(time.perf_counter() - start)
        wall = statistics.median(walls)
        rows.append({"size": k, "logrows": circuit.logrows, "proof_s": round(wall, 3),
                     "calls_per_s": round(k / wall, 2)})
        log(f"raw EZKL, batch of {k} (logrows {circuit.logrows}): {wall:.2f} s a proof, {k / wall:.1f} calls/s")
    return rows


CLIENT_PRELOAD = ["__main__", "eth_account", "requests", "x402", "x402.http.clients", "x402.mechanisms.evm",
                  "x402.mechanisms.evm.batch_settlement.client", "x402.mechanisms.evm.exact"]


@functools.cache
def client_context() -> Any:
    """Where the clients' processes come from: a fork server that imported this bench and the x402 client once
    (the node runs threads in this process: never fork it), so a level of 64 clients starts in seconds rather than
    each process importing them again (a minute of both cores at 32 clients, before the clock)."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(CLIENT_PRELOAD)
    return context


def client_process(index: int, key: bytes, network: str, calls: int, usdc: str, url: str, doc: dict[str, Any],
                   ready: Any, go: Any, results: Any) -> None:
    """One paying client in its own process: opens its channel (a warm-up call), then ``calls`` timed calls."""
    from eth_account import Account

    session = session_for(Account.from_key(key), SCHEME, network, calls + 1, usdc)
    warm = session.post(url, json=distinct_input(doc, index, 10_000), timeout=600)  # the deposit: not timed
    ready.release()
    go.wait()
    cpu_start = time.process_time()
    latencies: list[float] = []
    errors: list[str] = [] if warm.status_code == 200 else [f"warm-up {warm.status_code}: {warm.text[:160]}"]
    prove_s: list[float] = []
    for call in range(calls):
        start = time.perf_counter()
        try:
            answer = session.post(url, json=distinct_input(doc, index, call), timeout=600)
            body = answer.json() if answer.status_code == 200 else {}
            bundle = body.get("bundle") or {}
            bound = bundle.get("input", {})  # a public input's values, or a hashed one's commitment
            if answer.status_code == 200 and body.get("payment", {}).get("scheme") == SCHEME and \
                    bundle.get("proof", {}).get("hex") and (bound.get("values") or bound.get("commitment")):
                latencies.append(time.perf_counter() - start)
                prove_s.append(float(bundle.get("timings", {}).get("prove_s", 0.0)))
            else:
                errors.append(f"{answer.status_code}: {answer.text[:160]}")
        except Exception as exc:  # counted; the level goes on
            errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
    results.put((latencies, errors, prove_s, time.process_time() - cpu_start))


def fund(market: Any, accounts: list[Any], calls: int, price: int) -> None:
    """USDC for each payer's channel deposit (its calls and the node's minimum deposit), from the consumer's."""
    from proofmarket.core.settings import X402Settings

    minimum = X402Settings().channel_min_deposit_calls
    for account in accounts:
        need = price * (max(calls + 1, minimum) * 3 + 10)  # the client's deposit policy multiplies its calls
        held = market.usdc.balance_of(account.address)
        if held < need:
            market.usdc.transfer(account.address, need - held, market.accounts.consumer)


def level(base_url: str, client: Any, accounts: list[Any], network: str, usdc: str, model_id: str,
          doc: dict[str, Any], clients: int, total_calls: int) -> dict[str, Any]:
    context = client_context()
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    url = f"{base_url}/v1/models/{model_id}/infer?batch=allow"  # the bench's clients opt in to shared proofs
    per_client = [total_calls // clients + (1 if i < total_calls % clients else 0) for i in range(clients)]
    workers = [context.Process(target=client_process, args=(i, bytes(accounts[i].key), network, per_client[i],
                                                            usdc, url, doc, ready, go, results), daemon=True)
               for i in range(clients)]
    for w in workers:
        w.start()
    for _ in workers:  # every client has its channel open
        ready.acquire()
    quiet(client)
    log(f"{clients} client(s), {total_calls} calls")
    start, node_cpu = time.perf_counter(), time.process_time()
    go.set()
    latencies: list[float] = []
    errors: list[str] = []
    prove_s: list[float] = []
    clients_cpu = 0.0
    for _ in workers:
        done, failed, proofs, cpu = results.get(timeout=3600)
        latencies += done
        errors += failed
        prove_s += proofs
        clients_cpu += cpu
    wall = time.perf_counter() - start
    node_cpu = time.process_time() - node_cpu
    for w in workers:
        w.join(30)
    row = {"clients": clients, "calls": total_calls, "ok": len(latencies), "failures": len(errors),
           "wall_s": round(wall, 3), "verified_per_s": round(len(latencies) / wall, 2) if wall else None,
           "p50_s": _r(pct(latencies, 0.5)), "p95_s": _r(pct(latencies, 0.95)),
           "node_prove_p50_s": _r(pct(prove_s, 0.5)),
           # CPU seconds per answered call: the clients' (their processes, timed calls only) and this process's
           # (the node's API and runner threads; the prover processes not included)
           "clients_cpu_ms_per_call": round(clients_cpu * 1000 / len(latencies), 1) if latencies else None,
           "node_cpu_ms_per_call": round(node_cpu * 1000 / len(latencies), 1) if latencies else None,
           "errors": errors[:5]}
    log(f"{clients} client(s): {row['verified_per_s']} verified/s, p50 {row['p50_s']} s, {len(errors)} failures")
    return row


def caller_process(secret: str, url: str, doc: dict[str, Any], in_flight: int, calls: int, ready: Any, go: Any,
                   results: Any) -> None:
    """One caller in its own process: ``calls`` calls with one API key, ``in_flight`` at a time (threads)."""
    import threading

    import requests

    taken, lock = iter(range(calls)), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    prove_s: list[float] = []
    sizes: list[int] = []

    def send() -> None:
        session = requests.Session()
        while True:
            with lock:
                call = next(taken, None)
            if call is None:
                return
            start = time.perf_counter()
            try:
                answer = session.post(url, json=distinct_input(doc, CALLER_INDEX, call), timeout=600,
                                      headers={"Authorization": f"Bearer {secret}"})
                body = answer.json() if answer.status_code == 200 else {}
                bundle = body.get("bundle") or {}
                if answer.status_code == 200 and body.get("payment", {}).get("scheme") == "credits" and \
                        bundle.get("proof", {}).get("hex") and bundle.get("input", {}).get("values"):
                    with lock:
                        latencies.append(time.perf_counter() - start)
                        prove_s.append(float(bundle.get("timings", {}).get("prove_s", 0.0)))
                        sizes.append(int((bundle.get("batch") or {}).get("size") or 1))
                else:
                    with lock:
                        errors.append(f"{answer.status_code}: {answer.text[:160]}")
            except Exception as exc:  # counted; the level goes on
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")

    ready.release()
    go.wait()
    cpu_start = time.process_time()
    threads = [threading.Thread(target=send) for _ in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((latencies, errors, prove_s, time.process_time() - cpu_start, sizes))


def caller_runs(demo: Any, base: dict[str, Any], market: Any, price: int, tmp: Path, model_id: str,
                doc: dict[str, Any], workers: int, window: float, levels: list[int], calls: int) -> dict[str, Any]:
    """One node (``workers`` provers, ``window`` ms batch window) and, for each level, one caller with that many
    calls in flight, paying with one API key on prepaid credits (bought once, before the clock)."""
    from eth_account import Account
    from eth_utils.crypto import keccak

    from proofmarket.sdk.client import Client

    settings = Settings(**base, database_url=f"sqlite:///{tmp / f'node-caller-{workers}-{window}.db'}",
                        prover_workers=workers, batch_window_ms=window)
    rows = []
    with contextlib.ExitStack() as node_stack:
        url = demo.step(f"start node (one caller, {workers} provers, batch window {window} ms)",
                        functools.partial(start_node, node_stack, settings, model_id, market), 120)
        account = Account.from_key(keccak(CALLER_SEED + f"{workers}-{window}".encode()))
        totals = [max(calls, CALLS_PER_CLIENT * in_flight) for in_flight in levels]
        need = price * (sum(totals) + 10)
        market.usdc.transfer(account.address, need, market.accounts.consumer)
        client = Client(url, account, devnet=True)
        try:
            secret = client.keys.create(models=[model_id])["key"]
            bought = client.credits.buy(need)
        finally:
            client.close()
        if bought.get("status") != "credited":
            raise RuntimeError(f"the caller's credits were not credited: {bought}")
        context = client_context()
        for in_flight, total in zip(levels, totals, strict=True):
            ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
            proc = context.Process(target=caller_process, daemon=True, args=(
                secret, f"{url}/v1/models/{model_id}/infer?batch=allow", doc, in_flight, total, ready, go, results))
            proc.start()
            ready.acquire()
            quiet(market.client)
            log(f"one caller, {in_flight} calls in flight, {total} calls")
            start, node_cpu = time.perf_counter(), time.process_time()
            go.set()
            latencies, errors, prove_s, caller_cpu, sizes = results.get(timeout=3600)
            wall, node_cpu = time.perf_counter() - start, time.process_time() - node_cpu
            proc.join(30)
            row = {"in_flight": in_flight, "calls": total, "ok": len(latencies), "failures": len(errors),
                   "wall_s": round(wall, 3), "verified_per_s": round(len(latencies) / wall, 2) if wall else None,
                   "p50_s": _r(pct(latencies, 0.5)), "p95_s": _r(pct(latencies, 0.95)),
                   "node_prove_p50_s": _r(pct(prove_s, 0.5)),
                   "mean_batch": round(statistics.mean(sizes), 1) if sizes else None,
                   "caller_cpu_ms_per_call": round(caller_cpu * 1000 / len(latencies), 1) if latencies else None,
                   "node_cpu_ms_per_call": round(node_cpu * 1000 / len(latencies), 1) if latencies else None,
                   "errors": errors[:5]}
            log(f"one caller, {in_flight} in flight: {row['verified_per_s']} verified/s, mean batch "
                f"{row['mean_batch']}, {len(errors)} failures")
            rows.append(row)
    return {"prover_workers": workers, "batch_window_ms": window, "levels": rows}


def node_runs(demo: Any, base: dict[str, Any], market: Any, price: int, tmp: Path,
              model_id: str, doc: dict[str, Any], workers_list: list[int], windows: list[float], levels: list[int],
              calls: int, tag: str) -> list[dict[str, Any]]:
    """For each (prover workers, batch window) a node serving ``model_id``, and each level of paying clients."""
    from eth_account import Account
    from eth_utils.crypto import keccak

    network, usdc = f"eip155:{market.client.chain_id}", market.usdc.address
    nodes = []
    for workers, window in [(w, b) for w in workers_list for b in windows]:
        settings = Settings(**base, database_url=f"sqlite:///{tmp / f'node-{tag}-{workers}-{window}.db'}",
                            prover_workers=workers, batch_window_ms=window)
        with contextlib.ExitStack() as node_stack:  # one node at a time: the other's provers are stopped
            url = demo.step(f"start node ({tag}, {workers} provers, batch window {window} ms)",
                            functools.partial(start_node, node_stack, settings, model_id, market), 120)
            rows = []
            for clients in levels:
                name = f"{tag}-{workers}-{window}-{clients}"
                accounts = [Account.from_key(keccak(PAYER_SEED + f"{name}-{i}".encode())) for i in range(clients)]
                total = max(calls, clients * CALLS_PER_CLIENT)
                fund(market, accounts, -(-total // clients), price)
                rows.append(level(url, market.client, accounts, network, usdc, model_id, doc, clients, total))
        nodes.append({"prover_workers": workers, "batch_window_ms": window, "levels": rows})
    return nodes


def batching_cost(demo: Any, base: dict[str, Any], market: Any, price: int, tmp: Path, model_id: str,
                  doc: dict[str, Any], window: float) -> dict[str, Any]:
    """What batching costs a lone caller, measured in interleaved runs: each round a node without a batch window,
    then one with ``window`` (one prover each), one client making ``LONE_CALLS`` calls on each; the cost is the
    median over rounds of (p50 on - p50 off), so that a machine getting slower or faster during the run weighs on
    both sides alike."""
    diffs, pairs = [], []
    for r in range(LONE_ROUNDS):
        p50 = {}
        for w in (0.0, window):
            [node] = node_runs(demo, base, market, price, tmp, model_id, doc, [1], [w], [1], LONE_CALLS, f"lone{r}")
            p50[w] = node["levels"][0]["p50_s"]
        pairs.append({"off_p50_s": p50[0.0], "on_p50_s": p50[window]})
        if p50[0.0] is not None and p50[window] is not None:
            diffs.append((p50[window] - p50[0.0]) * 1000)
    cost = statistics.median(diffs) if diffs else None
    return {"ms": None if cost is None else round(cost, 1), "target_ms": BATCH_COST_TARGET_MS, "window_ms": window,
            "rounds": pairs, "result": None if cost is None else ("PASS" if cost <= BATCH_COST_TARGET_MS else "MISS")}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from proofmarket.chain import Devnet, find_anvil
    from proofmarket.onchain import Market
    from proofmarket.systems.workspace import Workspace

    demo = Demo(args.home, tmp)
    with demo.stack:
        devnet = Devnet(tmp / "devnet", anvil=find_anvil())
        # the sweep waits for the end (it is the settlement bench's subject, not this one's)
        os.environ.setdefault("PROOFMARKET_CHANNEL_SWEEP_THRESHOLD_ATOMIC", str(10**15))
        os.environ.setdefault("PROOFMARKET_CHANNEL_SWEEP_INTERVAL_S", "86400")
        os.environ.setdefault("PROOFMARKET_CHANNEL_WITHDRAW_DELAY_S", "172800")
        demo.step("start devnet", devnet.start, 60)
        demo.stack.callback(devnet.stop)
        base: dict[str, Any] = dict(home=args.home, rpc_url=devnet.rpc_url, deployment_file=tmp / "deployment.json",
                                    payments="on", escrow_watcher="off", proof_cache_size=0)
        ws = Workspace(Settings(**base, database_url=f"sqlite:///{tmp / 'compile.db'}"))
        demo.stack.callback(ws.close)
        market = demo.step("deploy contracts", lambda: Market.deploy(workspace=ws), 120)
        model_id = demo.step("compile model", lambda: compile_sample(ws), 1200)
        logrows = ws.prover.model(model_id)[0].logrows
        demo.step("register model", lambda: market.register_model(model_id, PRICE, OWNER_SHARE_BPS), 120)
        doc = json.loads(sample_path("mlp", "input").read_text())
        raw = raw_rate(ws, model_id, doc, args.raw)
        log(f"raw EZKL: {raw['per_s']} proofs/s back to back (ezkl.prove p50 {raw['ezkl_prove_p50_s']} s)")
        raw_k = raw_batches(ws, model_id, doc)
        spread = sorted({w for w in args.workers if w > 1})
        layouts = [raw_layout(ws, model_id, doc, w, max(4, args.raw // w)) for w in spread]
        for r in layouts:
            log(f"raw EZKL in {r['workers']} processes of {r['threads']} thread(s): {r['calls_per_s']} proofs/s")
        price = market.registry.get_model(market.onchain_id(model_id)).spec.price
        batches = [b.size for b in ws.prover.model(model_id)[0].batches]
        serve = functools.partial(node_runs, demo, base, market, price, tmp)
        nodes = serve(model_id, doc, args.workers, args.batching, args.levels, args.calls, "mlp")
        caller = None
        if args.caller_levels:  # the same model with batch circuits: one caller's calls may share a proof
            sizes = tuple(args.caller_batches)
            batched_id = demo.step(f"compile the sample MLP with batch circuits of {sizes}", lambda: ws.compile(
                sample_path("mlp"), json.loads(sample_path("mlp", "samples").read_text()), profile=PrivacyProfile(),
                batch_sizes=sizes).model_id, 1800)
            demo.step("register it", lambda: market.register_model(batched_id, PRICE, OWNER_SHARE_BPS), 120)
            caller = {**caller_runs(demo, base, market, price, tmp, batched_id, doc, max(args.workers),
                                    max([*args.batching, CALLER_WINDOW_MS]), args.caller_levels, args.calls),
                      "model_id": batched_id, "raw_batches": raw_batches(ws, batched_id, doc),
                      "raw_layouts": [raw_layout(ws, batched_id, doc, max(spread), 2, k) for k in sizes]
                      if spread else []}
        # raw EZKL again, after the nodes: this machine's speed drifts by a fifth over minutes, so the reference is
        # the mean of the rate measured before the nodes and after them
        raw = both_sides(raw, raw_rate(ws, model_id, doc, args.raw))
        layouts = [together(r, raw_layout(ws, model_id, doc, r["workers"], max(4, args.raw // r["workers"])))
                   for r in layouts]
        log(f"raw EZKL after the nodes: {raw['after_per_s']} proofs/s; the reference: {raw['per_s']} (mean)")
        cnn = None
        if args.cnn:  # the hashed-input CNN: private inputs are never batched (each call its own proof)
            cnn_id = demo.step("compile the hashed-input CNN", lambda: ws.compile(
                sample_path("cnn"), json.loads(sample_path("cnn", "samples").read_text()),
                profile=PrivacyProfile(input="hashed")).model_id, 1200)
            demo.step("register the CNN", lambda: market.register_model(cnn_id, PRICE, OWNER_SHARE_BPS), 120)
            cnn_doc = json.loads(sample_path("cnn", "input").read_text())
            cnn = {"model_id": cnn_id, "logrows": ws.prover.model(cnn_id)[0].logrows,
                   "raw": raw_rate(ws, cnn_id, cnn_doc, max(5, args.raw // 3)),
                   # up to the target's level: at 64 clients its four calls each take seven minutes (1.5 s proofs)
                   "nodes": serve(cnn_id, cnn_doc, [1], [0], [c for c in args.levels if c <= TARGET_LEVEL],
                                  max(16, args.calls // 2), "cnn")}
        window = max(args.batching)
        lone = batching_cost(demo, base, market, price, tmp, model_id, doc, window) if window > 0 else None
    at_target = [r for n in nodes for r in n["levels"] if r["clients"] == TARGET_LEVEL]
    best = max((r["verified_per_s"] or 0 for r in at_target), default=None)
    ceiling = raw_best(raw, raw_k, layouts)
    ratio = None if best is None else round(best / ceiling, 2)
    caller_at = [r for r in (caller or {}).get("levels", []) if r["in_flight"] == TARGET_LEVEL]
    caller_best = max((r["verified_per_s"] or 0 for r in caller_at), default=None)
    caller_ceiling = raw_best(raw, (caller or {}).get("raw_batches", []), (caller or {}).get("raw_layouts", []))
    caller_ratio = None if caller_best is None else round(caller_best / caller_ceiling, 2)
    return {"machine": machine_info(), "commit": commit(), "model_id": model_id, "logrows": logrows,
            "config": {"levels": args.levels, "workers": args.workers, "calls": args.calls, "scheme": SCHEME,
                       "proof_cache": "off", "price_atomic": price, "batch_sizes": batches,
                       "batch_windows_ms": args.batching},
            "raw": raw, "raw_batches": raw_k, "raw_layouts": layouts, "nodes": nodes, "one_caller": caller, "cnn": cnn,
            "batching_cost_ms": lone,
            "target": {"ratio": TARGET_RATIO, "clients": TARGET_LEVEL, "best": best, "raw_best_per_s": ceiling,
                       "best_ratio": ratio,
                       "result": None if ratio is None else ("PASS" if ratio >= TARGET_RATIO else "MISS"),
                       "one_caller_best": caller_best, "one_caller_ratio": caller_ratio,
                       "one_caller_raw_best_per_s": caller_ceiling,
                       "one_caller_result": None if caller_ratio is None else
                       ("PASS" if caller_ratio >= TARGET_RATIO else "MISS")}}


def raw_best(raw: dict[str, Any], batches: list[dict[str, Any]], layouts: list[dict[str, Any]] | None = None) -> float:
    """Raw EZKL's best rate on the node's circuits: the model's own or a batch circuit's calls per second, in one
    process or in the node's layout of prover processes."""
    return float(max([raw["per_s"], *[b["calls_per_s"] for b in [*batches, *(layouts or [])]]]))


def markdown(doc: dict[str, Any]) -> str:
    m, raw, c = doc["machine"], doc["raw"], doc["config"]
    lines = [
        "# proofmarket bench: verified inferences per second through one node (sample MLP, hashed-input CNN)",
        "",
        f"{m['date']} · commit {doc['commit']} · {m['cpu_count']} CPUs · {m['platform']} · logrows {doc['logrows']} · "
        f"paid on {c['scheme']} channels (one deposit per client, before the clock) · distinct inputs, proof cache "
        f"{c['proof_cache']} · clients in their own processes on the same machine",
        "",
        f"Reference, raw EZKL through the node's prover (one warm process, back to back, witness + proof + "
        f"self-verification): **{raw['per_s']} proofs/s** (ezkl.prove p50 {raw['ezkl_prove_p50_s'] * 1000:.0f} ms)"
        + (f", measured before the nodes ({raw['before_per_s']}/s) and after them ({raw['after_per_s']}/s): this "
           "machine's speed drifts between runs, so the two are taken together." if "after_per_s" in raw else "."),
        "",
        f"Batch circuits of the model: {', '.join(map(str, c.get('batch_sizes') or [])) or 'none'} calls per proof; "
        "a batch window of 0 ms never batches (each call its own proof). Raw EZKL on each (K distinct inputs in one "
        "proof, back to back, no node):",
        "",
        "| K | logrows | s a proof | calls/s |",
        "|---|---|---|---|",
        f"| 1 | {doc['logrows']} | {raw['wall_s'] / raw['proofs']:.3f} | {raw['per_s']} |",
        *[f"| {r['size']} | {r['logrows']} | {r['proof_s']} | {r['calls_per_s']} |"
          for r in doc.get("raw_batches", [])],
        *_layout_lines(doc.get("raw_layouts", [])),
        "",
        "\"vs raw best\" is the node's verified inferences per second over raw EZKL's best rate on the same "
        "circuits in this run (the model's own or a batch circuit's, in one process or in the node's layout of "
        "prover processes, whichever proves more calls a second).",
        "",
        *_level_table(doc["nodes"], raw_best(raw, doc.get("raw_batches", []), doc.get("raw_layouts", []))),
    ]
    cost = doc.get("batching_cost_ms")
    if cost and cost.get("rounds"):
        rounds = "; ".join(f"{r['off_p50_s']} / {r['on_p50_s']}" for r in cost["rounds"])
        lines += ["", f"Batching's cost to a lone caller (interleaved: each round a node without a batch window, then "
                      f"one with {cost['window_ms']:g} ms, one client, p50 s off / on: {rounds}): median difference "
                      f"{cost['ms']} ms (target <= {cost['target_ms']:g} ms): **{cost['result']}**."]
    caller = doc.get("one_caller")
    if caller:
        best = raw_best(raw, caller.get("raw_batches", []), caller.get("raw_layouts", []))
        lines += ["", f"One caller with many calls at once (an agent scoring a batch: one API key on prepaid credits, "
                      f"its calls sent from threads of one process; {caller['prover_workers']} prover(s), batch "
                      f"window {caller['batch_window_ms']:g} ms), on the same model compiled with batch circuits "
                      "(raw EZKL on them, K distinct inputs in one proof, back to back: "
                      + ", ".join(f"K = {b['size']} (logrows {b['logrows']}): {b['calls_per_s']} calls/s"
                                  for b in caller.get("raw_batches", []))
                      + "".join(f"; K = {b['size']} in {b['workers']} processes of {b['threads']} thread(s): "
                                f"{b['calls_per_s']} calls/s" for b in caller.get("raw_layouts", []))
                      + "). A caller's own calls may share a "
                      "proof; strangers' never do (a shared proof's instances show every slot), so the clients "
                      "above, each its own payer, are proven one call a proof. \"vs raw best\" here is over the "
                      f"best of these and K = 1 ({best}/s):", "",
                  "| calls in flight | calls | ok | failures | wall s | verified/s | vs raw best | p50 s | p95 s | "
                  "mean calls a proof | node ezkl.prove p50 s | caller's CPU ms/call | node's CPU ms/call |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
                  *[f"| {r['in_flight']} | {r['calls']} | {r['ok']} | {r['failures']} | {r['wall_s']} | "
                    f"{r['verified_per_s']} | {_vs(r['verified_per_s'], best)} | "
                    f"{r['p50_s']} | {r['p95_s']} | {r['mean_batch']} | {r['node_prove_p50_s']} | "
                    f"{r['caller_cpu_ms_per_call']} | {r['node_cpu_ms_per_call']} |" for r in caller["levels"]]]
    t = doc["target"]
    lines += ["", f"Target: at {t['clients']} clients the node reaches >= {t['ratio']:g} of raw EZKL's best rate on "
              f"the same circuits ({t['raw_best_per_s']}/s): best **{t['best']}/s, {t['best_ratio']}**: "
              f"**{t['result']}**"
              + (f"; one caller with {t['clients']} calls in flight, on the batch circuits: "
                 f"**{t['one_caller_best']}/s, {t['one_caller_ratio']}** of raw EZKL's best on them "
                 f"({t['one_caller_raw_best_per_s']}/s): **{t['one_caller_result']}**" if t.get("one_caller_best")
                 else "")
              + ".", "",
              "What stands between: strangers never share a proof, so {clients} clients of their own are proven one "
              "call a proof, whose raw rate is the K = 1 rows above (one process, or the node's layout of prover "
              "processes); the clients (their voucher signatures, in their own processes) and the node's own work "
              "per call (HTTP, payment, receipts, the book: its CPU per call is in the table) come out of the same "
              "cores as EZKL's provers; and a batch proves only as many of one caller's calls as are queued when a "
              "prover frees up.".format(
                  clients=t["clients"])]
    cnn = doc.get("cnn")
    if cnn:
        lines += ["", f"## Hashed-input CNN (private-input profile, logrows {cnn['logrows']}: never batched, each call "
                      f"its own proof)", "",
                  f"Raw EZKL: **{cnn['raw']['per_s']} proofs/s** (ezkl.prove p50 "
                  f"{cnn['raw']['ezkl_prove_p50_s'] * 1000:.0f} ms).", "",
                  *_level_table(cnn["nodes"], cnn["raw"]["per_s"])]
    return "\n".join(lines) + "\n"


def _layout_lines(layouts: list[dict[str, Any]]) -> list[str]:
    if not layouts:
        return []
    return ["", "Raw EZKL in the node's layout (its prover processes side by side, cores // processes EZKL threads "
                "each, each proving distinct inputs back to back, no node; before and after the nodes, together):",
            "", "| processes | threads each | K | proofs | s a proof p50 | calls/s |", "|---|---|---|---|---|---|",
            *[f"| {r['workers']} | {r['threads']} | {r['size']} | {r['proofs']} | {r['proof_p50_s']} | "
              f"{r['calls_per_s']} |" for r in layouts]]


def _vs(rate: float | None, best: float) -> str:
    return f"{rate / best:.2f}" if rate and best else "—"


def _level_table(nodes: list[dict[str, Any]], best: float) -> list[str]:
    lines = ["| prover workers | batch window ms | clients | calls | ok | failures | wall s | verified/s | "
             "vs raw best | p50 s | p95 s | node ezkl.prove p50 s | clients' CPU ms/call | node's CPU ms/call |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for node in nodes:
        for r in node["levels"]:
            ratio = _vs(r["verified_per_s"], best)
            lines.append(f"| {node['prover_workers']} | {node.get('batch_window_ms', 0)} | {r['clients']} | "
                         f"{r['calls']} | {r['ok']} | {r['failures']} | "
                         f"{r['wall_s']} | {r['verified_per_s']} | {ratio} | {r['p50_s']} | {r['p95_s']} | "
                         f"{r['node_prove_p50_s']} | {r.get('clients_cpu_ms_per_call')} | "
                         f"{r.get('node_cpu_ms_per_call')} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 8, 32, 64],
                        help="concurrent clients per level")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="the node's prover processes, per run")
    parser.add_argument("--batching", type=float, nargs="+", default=[0, 10],
                        help="batch windows in ms, per run (0: each call its own proof)")
    parser.add_argument("--caller-levels", type=int, nargs="*", default=[8, 32],
                        help="calls in flight of the one caller, per level (none: leave the one caller out)")
    parser.add_argument("--caller-batches", type=int, nargs="+", default=[4, 16],
                        help="batch circuits of the one caller's model")
    parser.add_argument("--calls", type=int, default=48,
                        help=f"calls per level (at least {CALLS_PER_CLIENT} per client)")
    parser.add_argument("--raw", type=int, default=30, help="raw EZKL proofs for the reference rate")
    parser.add_argument("--no-cnn", dest="cnn", action="store_false", help="leave out the hashed-input CNN's rows")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="results directory")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("PROOFMARKET_HOME", ".demo")),
                        help="data folder (store, SRS cache), shared with make demo")
    args = parser.parse_args(argv)
    args.home = args.home.resolve()
    with tempfile.TemporaryDirectory(prefix="pm-throughput-") as tmp:
        doc = run(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    (args.out / "throughput.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
