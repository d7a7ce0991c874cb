"""Scale bench (issue 12): the local queue against the celery queue with 1, 2 and 4 worker processes, queue and
cache overhead per call, a cached repeat's latency, all over HTTP on loopback, against raw EZKL in the same run.

    1. raw prove: ``Workspace.prove`` (warm prover process), median of --calls; the ``ezkl.prove`` time inside it
    2. per queue (local with 1 prover; celery with 1, 2, 4 ``proofmarket worker`` processes on a redis-server
       started here): --calls sequential free calls (p50 latency, overhead = p50 - raw p50), then --load calls
       from 8 concurrent clients (calls/s, p50, p95, 5xx answers); distinct inputs, proof cache off
    3. the proof cache: one call, then --calls repeats of it over HTTP (p50/p95 ms; target p50 <= 20 ms)
    4. the pieces the plan for N machines rests on: a Redis send (send_task) and the database writes of one job

Free calls (payments off): settlement is the chain's cost, measured by bench/http_bench.py. Writes OUT/scale.json
and OUT/scale.md; progress on stderr. Needs redis-server (Debian package); exits 0 when targets are missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from proofmarket.core.settings import Settings
from proofmarket.samples import sample_path
from proofmarket.systems.workspace import Workspace

CACHE_TARGET_MS = 20.0
CONCURRENCY = 8
SETUPS = (("local", 1), ("celery", 1), ("celery", 2), ("celery", 4))


def log(text: str) -> None:
    print(f"[scale] {text}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def doc(i: int) -> dict[str, Any]:
    return {"input_data": [[round(0.001 * i + 0.01 * j, 6) for j in range(8)]]}


def compile_mlp(ws: Workspace) -> str:
    from proofmarket.systems.ezkl.compiler import CompileOptions
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.ezkl.srs import SrsProvider
    from proofmarket.systems.ezkl.tuning import Candidate

    samples = json.loads(sample_path("mlp", "samples").read_text())
    options = CompileOptions(profile=PrivacyProfile.parse("public"), srs=SrsProvider(ws.settings.srs_dir),
                             candidates=[Candidate(256, 2, 7, 4)])
    return ws.prover.compile(sample_path("mlp"), samples, options).model_id


class Node:
    """A node app served by uvicorn in a thread, and its worker subprocesses."""

    def __init__(self, settings: Settings, model_id: str, workers: int, env: dict[str, str]) -> None:
        import uvicorn

        from proofmarket.api import create_app

        self.app = create_app(settings)
        self.app.state.services.catalog.register(model_id, price_atomic=10_000)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs = [subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "worker", "--name", f"w{i}"],
                                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for i in range(workers if settings.queue.kind == "celery" else 0)]
        deadline = time.monotonic() + 120
        while True:
            health = httpx.get(f"{self.url}/health").json()
            if health["workers"] >= workers and health["provers_warm"] >= workers:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start: {health}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)
        self.server.should_exit = True
        self.thread.join(30)
        self.app.state.services.close()


def call(client: httpx.Client, url: str, model_id: str, body: dict[str, Any]) -> tuple[float, int, float]:
    """(latency, status, the ezkl.prove time inside the worker that answered: its bundle's timings)"""
    started = time.perf_counter()
    response = client.post(f"{url}/v1/models/{model_id}/infer", json=body, timeout=300)
    took = time.perf_counter() - started
    prove_s = 0.0
    if response.status_code == 200:
        prove_s = float(((response.json().get("bundle") or {}).get("timings") or {}).get("prove_s", 0.0))
    return took, response.status_code, prove_s


def measure_queue(node: Node, model_id: str, calls: int, load: int, offset: int) -> dict[str, Any]:
    with httpx.Client() as client:
        call(client, node.url, model_id, doc(offset))  # warm-up
        single = [call(client, node.url, model_id, doc(offset + 1 + i)) for i in range(calls)]
    statuses: list[int] = []
    latencies: list[float] = []

    def one(i: int) -> None:
        with httpx.Client() as c:
            took, status, _ = call(c, node.url, model_id, doc(offset + 1_000 + i))
        latencies.append(took)
        statuses.append(status)

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, range(load)))
    wall = time.perf_counter() - started
    # the call without its proof, measured inside each call: not moved by how loaded the machine was when the
    # raw prove was measured (a proof's time varies most on a shared machine)
    return {"single_p50_s": statistics.median(t for t, _, _ in single),
            "single_unproved_p50_s": statistics.median(t - p for t, _, p in single),
            "calls_per_s": load / wall, "p50_s": pct(latencies, 0.5),
            "p95_s": pct(latencies, 0.95), "server_errors": sum(1 for s in statuses if s >= 500),
            "not_200": sum(1 for s in statuses if s != 200)}


def pieces(settings: Settings, redis_url: str) -> dict[str, float]:
    """Per-call costs the N-machine plan rests on: one broker send, the database writes of one job."""
    from proofmarket.calls.celery_queue import celery_app
    from proofmarket.db import CallKind, CallRepo, Database, NewCall

    app = celery_app(settings.model_copy(update={"redis_url": redis_url}))
    n = 300
    started = time.perf_counter()
    for i in range(n):
        app.send_task("proofmarket.bench_noop", args=[str(i)], queue="proofmarket.bench")
    send_ms = (time.perf_counter() - started) / n * 1000
    db = Database(settings.db_url)
    db.migrate()
    jobs = CallRepo(db)
    started = time.perf_counter()
    for i in range(n):
        job = jobs.create(NewCall(CallKind.PROVE, {"inputs": doc(i)}, f"h{i}", model_id="m"))
        jobs.start(job.id)
        jobs.proved(job.id, bundle_cid="c", result={"output": []}, final=True)
    db_ms = (time.perf_counter() - started) / n * 1000
    db.close()
    return {"redis_send_ms": send_ms, "db_job_writes_ms": db_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--load", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="proofmarket-scale-"))
    home = tmp / "home"
    base = Settings(_env_file=None, home=home, proof_cache_size=0)  # type: ignore[call-arg]
    ws = Workspace(base)
    log("compile the sample MLP (one candidate)")
    model_id = compile_mlp(ws)
    ws.prove(model_id, doc(0))
    raw, inner = [], []
    for i in range(args.calls):
        started = time.perf_counter()
        result = ws.prove(model_id, doc(i + 1))
        raw.append(time.perf_counter() - started)
        inner.append(float(result.bundle.timings.get("prove_s", 0.0)))
    ws.close()
    raw_p50 = statistics.median(raw)
    raw_rest = statistics.median(r - p for r, p in zip(raw, inner, strict=True))  # Workspace.prove around ezkl.prove
    log(f"raw prove p50 {raw_p50 * 1000:.0f} ms")
    import contextlib

    from proofmarket.calls.redis_server import redis_server

    stack = contextlib.ExitStack()
    redis = stack.enter_context(redis_server())
    if redis is None:
        raise SystemExit("bench/scale.py needs redis-server (apt-get install redis-server)")
    results: dict[str, Any] = {"raw_prove_p50_s": raw_p50, "ezkl_prove_p50_s": statistics.median(inner),
                               "raw_unproved_p50_s": raw_rest,
                               "queues": [], "cores": os.cpu_count(), "machine": platform.platform(),
                               "date": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        for n, (engine, workers) in enumerate(SETUPS):
            log(f"{engine} with {workers} worker(s)")
            db = tmp / f"node-{n}.db"
            settings = base.model_copy(update={"database_url": f"sqlite:///{db}", "queue": engine,
                                               "redis_url": redis.url, "prover_workers": workers})
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
                   "PROOFMARKET_HOME": str(home), "PROOFMARKET_DATABASE_URL": f"sqlite:///{db}",
                   "PROOFMARKET_REDIS_URL": redis.url, "PROOFMARKET_PROOF_CACHE_SIZE": "0"}
            node = Node(settings, model_id, workers, env)
            try:
                row = measure_queue(node, model_id, args.calls, args.load, 10_000 * (n + 1))
            finally:
                node.stop()
            row.update(engine=engine, workers=workers, overhead_ms=(row["single_p50_s"] - raw_p50) * 1000,
                       ratio=row["single_p50_s"] / raw_p50,
                       in_call_overhead_ms=(row["single_unproved_p50_s"] - raw_rest) * 1000)
            results["queues"].append(row)
        log("proof cache: a repeated call over HTTP")
        settings = base.model_copy(update={"database_url": f"sqlite:///{tmp / 'cache.db'}", "proof_cache_size": 100})
        node = Node(settings, model_id, 1, {})
        try:
            with httpx.Client() as client:
                call(client, node.url, model_id, doc(7))
                repeats = [call(client, node.url, model_id, doc(7))[0] * 1000 for _ in range(max(20, args.calls))]
                metrics = client.get(f"{node.url}/metrics").text
        finally:
            node.stop()
        hit_line = next((line for line in metrics.splitlines()
                         if line.startswith('proofmarket_proof_cache_total{result="hit"}')), "")
        results["cache"] = {"p50_ms": statistics.median(repeats), "p95_ms": pct(repeats, 0.95),
                            "hits": float(hit_line.split()[-1]) if hit_line else 0.0, "target_ms": CACHE_TARGET_MS}
        results["pieces"] = pieces(base.model_copy(update={"database_url": f"sqlite:///{tmp / 'pieces.db'}"}),
                                   redis.url)
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    write(results, args.out)
    return 0


def write(r: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(r, indent=2))
    raw_ms = r["raw_prove_p50_s"] * 1000
    c, p = r["cache"], r["pieces"]
    lines = ["# Scale: local queue vs celery workers, proof cache", "",
             f"`make bench` (bench/scale.py), {r['date']}, {r['cores']} cores, {r['machine']}. Sample MLP, one "
             f"candidate; free calls over HTTP on loopback (payment settlement excluded: bench/http.md). Raw prove "
             f"(warm prover process) p50 {raw_ms:.0f} ms, of which ezkl.prove {r['ezkl_prove_p50_s'] * 1000:.0f} ms.",
             "", "Queue overhead: single call p50 - raw prove p50. In-call overhead: the median over single calls of "
             "(latency - the ezkl.prove time in the answer's bundle), minus the same for the raw prove "
             f"({r['raw_unproved_p50_s'] * 1000:.0f} ms): the node's cost without the proof, less moved by load on "
             "this shared machine than the first.",
             "", "| queue | workers | single call p50 | vs raw prove | queue overhead | in-call overhead | "
             "calls/s (8 clients) | p50 | p95 | 5xx |", "|---|---|---|---|---|---|---|---|---|---|"]
    for q in r["queues"]:
        lines.append(f"| {q['engine']} | {q['workers']} | {q['single_p50_s'] * 1000:.0f} ms | {q['ratio']:.2f}x | "
                     f"{q['overhead_ms']:.0f} ms | {q['in_call_overhead_ms']:.0f} ms | {q['calls_per_s']:.2f} | "
                     f"{q['p50_s'] * 1000:.0f} ms | {q['p95_s'] * 1000:.0f} ms | {q['server_errors']} |")
    verdict = "ok" if c["p50_ms"] <= c["target_ms"] else "MISS"
    lines += ["", f"Proof cache: a repeated call answers in p50 {c['p50_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms over "
              f"HTTP (target p50 <= {c['target_ms']:.0f} ms: {verdict}); {c['hits']:.0f} hits counted in /metrics.",
              "", "Per-call pieces: one Redis send (send_task) "
              f"{p['redis_send_ms']:.2f} ms; the database writes of one job (create, start, proved; SQLite) "
              f"{p['db_job_writes_ms']:.2f} ms.", "",
              "## Plan for N machines", "",
              "Nodes are stateless behind a load balancer (one PostgreSQL, one Redis); workers run one proof each. "
              f"On this machine a proof costs ~{raw_ms:.0f} ms of one core, so a worker core serves about "
              f"{1000 / raw_ms:.1f} calls/s of this model; more workers than cores only queue (2 cores here: the "
              "4-worker row shows it). What saturates first, in order:", "",
              f"1. **Provers** (CPU): calls/s ≈ worker cores × {1000 / raw_ms:.1f} for this model (a 10 s proof: 0.1 "
              "per core). Add worker machines; route a model's jobs to workers that keep its keys warm "
              "(`--model`).",
              "2. **The chain's settlement** (paid calls): one transferWithAuthorization per call, sent by the "
              "node's one settlement account (nonces in order). Settled calls/s ≤ block gas limit / (gas per "
              "transfer × block time): with a 30M-gas block every 2 s and an estimated ~60k gas per transfer "
              "(not measured here) about 250/s, and one sending account keeps fewer in flight; batch settlement "
              "or several settlement accounts are the way past it.",
              f"3. **PostgreSQL**: ~4-6 small writes per job ({p['db_job_writes_ms']:.1f} ms on SQLite here); "
              "a single PostgreSQL takes thousands of such writes per second: not first to saturate below "
              "~500 calls/s.",
              f"4. **Redis**: one send per job ({p['redis_send_ms']:.2f} ms) plus heartbeats every 2 s per worker: "
              "tens of thousands of operations per second available; not a limit at this scale.",
              "5. **Artifact fetches**: a new worker machine reads each model's proving key once (MBs to hundreds "
              "of MBs, e.g. 189 MB for a 784-56-10 MLP) from the shared store, then proves from its disk.", ""]
    (out / "scale.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
