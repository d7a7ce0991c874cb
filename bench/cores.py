"""Scaling with cores (issue 57): verified inferences per second against the number of worker processes on the Celery
engine, beside raw EZKL with as many processes, on the same circuits, in the same run.

    python bench/cores.py [--workers 1,2,4,8,16] [--seconds 12] [--home DIR --model mlp=ID --model cnn=ID]

Models: the sample MLP (public input) and the sample CNN with a hashed input (``samples/cnn``), compiled into
``--home`` unless their ids are given (a machine without Node.js cannot compile: give a home compiled elsewhere).
Queue: ``PROOFMARKET_REDIS_URL`` when set, else a ``redis-server`` from PATH started on a free port.

For each worker count N and model:

    1. raw EZKL: N processes, each proving distinct inputs back to back through the node's own prover
       (``Workspace.prove``: witness, proof, self-verification, bundle) for ``--seconds``; proofs per second in all
    2. the node: ``proofmarket node`` (PROOFMARKET_QUEUE=celery, payments off, proof cache off) and N
       ``proofmarket worker`` processes; 3N + 2 clients (threads in client processes) each send distinct inputs for
       ``--seconds``; an answer counts when it is a 200 (or its job's result) holding a proof bundle that the worker
       verified before answering, for the client's own input

Only what finishes inside the window counts, on both sides (a call queued before the end and answered after it is
left out: with 3N + 2 clients and N provers, counting those would credit the node with up to 2N + 2 extra answers).

Each process proves with ``RAYON_NUM_THREADS`` = cores // N (``--threads all`` leaves EZKL its default: every core per
process). Writes OUT/cores.json and OUT/cores.md after every measurement (a run cut short keeps what it measured).
Nothing in the project needs a machine of many cores: this bench only records the curve when one is at hand.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inputs import distinct_input  # noqa: E402

from proofmarket.chain.devnet import free_port  # noqa: E402

PRICE = 10_000  # atomic USDC: a listing needs a price; with payments off nobody is charged
LOG_PREFIX = "[cores]"


def log(text: str) -> None:
    print(f"{LOG_PREFIX} {text}", file=sys.stderr, flush=True)


def threads_for(workers: int, policy: str) -> str | None:
    return None if policy == "all" else str(max(1, (os.cpu_count() or 1) // workers))


def child_env(home: Path, threads: str | None, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PROOFMARKET_HOME": str(home), **extra}
    env.pop("RAYON_NUM_THREADS", None)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = threads
    return env


# --- raw EZKL: N prover processes ------------------------------------------------------------------------------
def _wait_go(gate: Path) -> float:
    """The start time the parent writes into ``gate/go`` once every process is warm."""
    while not (gate / "go").exists():
        time.sleep(0.005)
    return float((gate / "go").read_text())


def _raw_worker(home: str, model_id: str, doc: dict[str, Any], index: int, seconds: float, threads: str | None,
                gate: str) -> tuple[int, list[float]]:
    if threads is not None:
        os.environ["RAYON_NUM_THREADS"] = threads
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace

    ws = Workspace(Settings(home=Path(home), _env_file=None), inline_prover=True)
    try:
        ws.prove(model_id, distinct_input(doc, 900 + index, 0))  # warm: keys read
        (Path(gate) / f"ready-{index}").touch()
        start_at = _wait_go(Path(gate))
        while time.time() < start_at:
            time.sleep(0.001)
        done, prove_s, call = 0, [], 1
        stop = start_at + seconds
        while time.time() < stop:
            result = ws.prove(model_id, distinct_input(doc, 900 + index, call))
            call += 1
            if time.time() <= stop:  # only proofs finished inside the window count
                prove_s.append(float(result.bundle.timings.get("prove_s", 0.0)))
                done += 1
        return done, prove_s
    finally:
        ws.close()


def raw_rate(home: Path, model_id: str, doc: dict[str, Any], workers: int, seconds: float,
             threads: str | None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-cores-gate-") as gate, \
            concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(_raw_worker, str(home), model_id, doc, i, seconds, threads, gate)
                   for i in range(workers)]
        while len(list(Path(gate).glob("ready-*"))) < workers:  # every process warm before the clock starts
            if any(f.done() for f in futures):
                break
            time.sleep(0.01)
        (Path(gate) / "go").write_text(str(time.time() + 0.2))
        results = [f.result() for f in futures]
    proofs = sum(r[0] for r in results)
    inner = [s for r in results for s in r[1]]
    return {"proofs": proofs, "per_s": round(proofs / seconds, 2),
            "prove_p50_s": round(statistics.median(inner), 4) if inner else None}


# --- the node: Celery engine, N workers ------------------------------------------------------------------------
def _answer(http: httpx.Client, base: str, model_id: str, doc: dict[str, Any]) -> bool:
    """One call answered with a proof the worker verified: a 200 holding the bundle (its proof and its input's values
    or commitment), or a 202 whose job ends proved with its bundle's CID."""
    r = http.post(f"{base}/v1/models/{model_id}/infer", json=doc, timeout=600)
    if r.status_code == 200:
        bundle = r.json().get("bundle") or {}
        return bool(bundle.get("proof", {}).get("hex") and bundle.get("input"))
    if r.status_code != 202:
        return False
    body = r.json()
    job, token = body.get("id") or body.get("job_id"), body.get("access_token", "")
    while True:
        time.sleep(0.05)
        j = http.get(f"{base}/v1/jobs/{job}", headers={"X-Job-Token": token}, timeout=60)
        state: dict[str, Any] = j.json() if j.status_code == 200 else {"status": "failed"}
        if state.get("status") in ("proved", "settled"):
            return bool((state.get("result") or {}).get("bundle_cid"))
        if state.get("status") == "failed":
            return False


def _client(base: str, model_id: str, doc: dict[str, Any], index: int, threads: int, seconds: float,
            start_at: float) -> tuple[int, int, list[float]]:
    """``threads`` clients in one process: (verified answers, failures, latencies) over ``seconds``."""
    def one(t: int) -> tuple[int, int, list[float]]:
        ok, bad, lat, call = 0, 0, [], 0
        with httpx.Client() as http:
            while time.time() < start_at:
                time.sleep(0.01)
            stop = start_at + seconds
            while time.time() < stop:
                begun = time.perf_counter()
                verified = _answer(http, base, model_id, distinct_input(doc, index * 64 + t, call))
                call += 1
                if time.time() > stop:  # answered after the window: not counted (nor as a failure)
                    break
                if verified:
                    ok += 1
                    lat.append(time.perf_counter() - begun)
                else:
                    bad += 1
        return ok, bad, lat

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(one, range(threads)))
    return sum(p[0] for p in parts), sum(p[1] for p in parts), [x for p in parts for x in p[2]]


class Node:
    """``proofmarket node`` on the Celery queue and N ``proofmarket worker`` processes, stopped on exit."""

    def __init__(self, home: Path, models: dict[str, str], workers: int, redis_url: str, threads: str | None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        unlimited = "1000000/1 second"
        env = child_env(home, threads, {
            "PROOFMARKET_QUEUE": "celery", "PROOFMARKET_REDIS_URL": redis_url, "PROOFMARKET_PAYMENTS": "off",
            "PROOFMARKET_REGISTRY_TERMS": "off", "PROOFMARKET_ESCROW_WATCHER": "off",
            "PROOFMARKET_PROOF_CACHE_SIZE": "0", "PROOFMARKET_INFER_WAIT_S": "300",
            "PROOFMARKET_RATE_LIMIT_UNPAID": unlimited,
            "PROOFMARKET_RATE_LIMIT_PROBE": unlimited, "PROOFMARKET_RATE_LIMIT_PAYER": unlimited,
            "PROOFMARKET_RATE_LIMIT_KEY": unlimited})
        cli = [sys.executable, "-m", "proofmarket.cli.entry"]
        listed = [a for mid in models.values() for a in ("--model", f"{mid}={PRICE}")]
        self.logs = Path(tempfile.mkdtemp(prefix="bench-cores-"))
        commands = [[*cli, "node", "--port", str(self.port), "--log-level", "warning", *listed]] + [
            [*cli, "worker", "--name", f"w{i}-{self.port}", "--no-compile"] for i in range(workers)]
        self.procs = []
        for i, command in enumerate(commands):
            with open(self.logs / ("node.log" if i == 0 else f"w{i}.log"), "w") as sink:  # the child keeps its copy
                self.procs.append(subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT))
        self.workers = workers

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        deadline, health = time.time() + timeout_s, dict[str, Any]()
        while time.time() < deadline:
            try:
                health = httpx.get(self.base + "/health", timeout=5).json()
                if health.get("workers", 0) >= self.workers and health.get("provers_warm", 0) >= self.workers:
                    return
            except Exception as exc:  # still starting
                health = {"error": repr(exc)}
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.5)
        tail = (self.logs / "node.log").read_text()[-2000:]
        raise RuntimeError(f"node or workers not ready: {health}\n{tail}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def node_rate(node: Node, model_id: str, doc: dict[str, Any], seconds: float) -> dict[str, Any]:
    clients = 3 * node.workers + 2
    processes = max(1, min(8, clients // 4))
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    with httpx.Client() as http:  # warm: each worker's prover reads this model's keys
        for i in range(node.workers):
            _answer(http, node.base, model_id, distinct_input(doc, 5000 + i, 0))
    start_at = time.time() + 3.0 + processes * 0.5
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        parts = [f.result() for f in [pool.submit(_client, node.base, model_id, doc, i, n, seconds, start_at)
                                      for i, n in enumerate(per)]]
    ok, bad = sum(p[0] for p in parts), sum(p[1] for p in parts)
    latencies = sorted(x for p in parts for x in p[2])
    return {"clients": clients, "verified": ok, "failed": bad, "per_s": round(ok / seconds, 2),
            "p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "p95_s": round(latencies[int(len(latencies) * 0.95)], 3) if latencies else None}


# --- the run --------------------------------------------------------------------------------------------------
def compile_samples(home: Path) -> dict[str, str]:
    from proofmarket.core.settings import Settings
    from proofmarket.samples import sample_path
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.workspace import Workspace

    ws = Workspace(Settings(home=home, _env_file=None))
    try:
        out = {}
        for name, profile in (("mlp", PrivacyProfile()), ("cnn", PrivacyProfile.parse("private-input"))):
            samples = json.loads(sample_path(name, "samples").read_text())
            log(f"compiling the sample {name}")
            out[name] = ws.compile(sample_path(name), samples, profile=profile, batch_sizes=()).model_id
        return out
    finally:
        ws.close()


def start_redis() -> tuple[str, subprocess.Popen[bytes] | None]:
    if os.environ.get("PROOFMARKET_REDIS_URL"):
        return os.environ["PROOFMARKET_REDIS_URL"], None
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("cores: no PROOFMARKET_REDIS_URL and no redis-server on PATH")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return f"redis://127.0.0.1:{port}/0", proc


def write(out: Path, doc: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cores.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"Verified inferences per second against worker processes (`python bench/cores.py`, {doc['date']}, "
             f"{doc['machine']['cpu_count']} cores, {doc['machine']['platform']}); EZKL threads per process: "
             f"{doc['threads']}; {doc['seconds']} s per measurement, every answer a fresh proof the worker verified.",
             "", "| model | workers | raw EZKL /s | node /s | node / raw | clients | p50 s | p95 s | failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in doc["rows"]:
        raw, node = row.get("raw") or {}, row.get("node") or {}
        ratio = round(node["per_s"] / raw["per_s"], 2) if raw.get("per_s") and node.get("per_s") is not None else "-"
        lines.append(f"| {row['model']} | {row['workers']} | {raw.get('per_s', '-')} | {node.get('per_s', '-')} | "
                     f"{ratio} | {node.get('clients', '-')} | {node.get('p50_s', '-')} | {node.get('p95_s', '-')} | "
                     f"{node.get('failed', '-')} |")
    (out / "cores.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each measurement")
    parser.add_argument("--threads", choices=("auto", "all"), default="auto",
                        help="EZKL threads per process: cores // workers (auto) or EZKL's default (all)")
    parser.add_argument("--home", type=Path, default=None, help="a home with the models compiled (else a new one)")
    parser.add_argument("--model", action="append", default=[], help="NAME=MODEL_ID in --home (mlp, cnn)")
    parser.add_argument("--skip", default="", help="raw or node: leave that half out")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    args = parser.parse_args(argv)
    from proofmarket.samples import sample_path

    home = args.home or Path(tempfile.mkdtemp(prefix="bench-cores-home-"))
    models = dict(m.split("=", 1) for m in args.model) or compile_samples(home)
    redis_url, redis = start_redis()
    import ezkl

    doc: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "seconds": args.seconds,
                           "threads": "cores // workers" if args.threads == "auto" else "EZKL's default (all cores)",
                           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                       "python": platform.python_version(), "ezkl": getattr(ezkl, "__version__", None)},
                           "models": models, "rows": []}
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            threads = threads_for(workers, args.threads)
            rows = {name: {"model": name, "workers": workers} for name in models}
            for name, model_id in models.items():
                if "raw" not in args.skip:
                    rows[name]["raw"] = raw_rate(home, model_id, json.loads(sample_path(name, "input").read_text()),
                                                 workers, args.seconds, threads)
                    log(f"{name}, {workers} raw EZKL processes: {rows[name]['raw']}")
            if "node" not in args.skip:
                node = Node(home, models, workers, redis_url, threads)
                try:
                    node.wait_ready()
                    for name, model_id in models.items():
                        rows[name]["node"] = node_rate(node, model_id,
                                                       json.loads(sample_path(name, "input").read_text()), args.seconds)
                        log(f"{name}, node with {workers} workers: {rows[name]['node']}")
                finally:
                    node.stop()
            doc["rows"].extend(rows.values())
            write(args.out, doc)
    finally:
        if redis is not None:
            redis.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
