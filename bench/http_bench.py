"""HTTP bench (issue 4): a paid inference over HTTP against the raw prove time, and throughput under concurrency.

In one run on the sample MLP (default settings grid, or ``--quick``: one candidate), on loopback only:

    1. raw prove: ``Workspace.prove`` in-process through the node's own ``EzklProver`` (warm worker),
       median of --calls; the ``ezkl.prove`` time inside the worker (the bundle's ``timings.prove_s``) too
    2. a paid inference over HTTP (x402, ``Client.infer``, sync mode): one warm-up call per node prover
       process, then the median of --calls sequential calls; ratio = HTTP median / raw prove median (target <= 1.15).
       The node runs in this process, so each call's settlement is timed where it happens (``SPANS``: the
       chain settlement, the gate's ``settle``; the runner's whole settle step); node overhead = the median of
       (HTTP call - its chain settlement) - the raw prove median
    3. throughput with 1, 2, 4 and 8 concurrent clients (threads, each its own ``Client`` and its own
       fresh payer account funded from the consumer's USDC), --calls calls per level: calls/s, p50/p95 latency, failures

The devnet, contracts and compile come from ``proofmarket.demo``; the node is the app ``create_app`` builds
(``proofmarket.node``), served by uvicorn in a thread, the sample MLP its only model. Writes OUT/http.json and
OUT/http.md and prints the table; progress on stderr. Exit 0 even when the target is missed (MISS).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proofmarket.chain.commitments import model_id_for
from proofmarket.cli.node_cmd import KEEP_ALIVE_S
from proofmarket.core.settings import Settings
from proofmarket.core.units import format_usdc
from proofmarket.demo import OWNER_SHARE_BPS, PRICE, Demo, compile_sample
from proofmarket.samples import sample_path

RATIO_TARGET = 1.15
NODE_WORK_TARGET_MS = 20.0  # issue 36: the node's own work per paid call, p50
# what is timed inside the node, per call: name -> (module, class or "" for a module function, name), wrapped
# for the run only
SPANS = {"chain_settle": ("proofmarket.payments.exact.settle", "Settling", "settle"),
         "settle_step": ("proofmarket.calls.runner", "CallRunner", "_settle"),
         # the hand-off to the prover process and back (witness, proof, self-verification, the bundle stored)
         "execute": ("proofmarket.calls.runner", "CallRunner", "_execute"),
         # the node's own steps (issue 36: each measured)
         "payment_check": ("proofmarket.api.routers.infer", "", "_submit"),
         "terms": ("proofmarket.api.routers.infer", "", "_offer"),
         "answer": ("proofmarket.api.routers.infer", "", "_answer"),
         # the SDK checks every answer locally (proof, receipt, that it answers the request): client time
         "client_verify": ("proofmarket.sdk.verifying", "Verifying", "verify")}
LEVELS = (1, 2, 4, 8)
PAYER_SEED = b"proofmarket-bench-http-payer-"  # fresh payer keys: x402 payers only sign, they need no ETH


def log(text: str) -> None:
    print(f"[http] {text}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Spans:
    """Durations of the ``SPANS`` methods while installed (a wrapper that times and calls the original)."""

    def __init__(self, spans: dict[str, tuple[str, str, str]]) -> None:
        self.spans = spans
        self.seen: dict[str, list[float]] = {name: [] for name in spans}
        self._originals: list[tuple[Any, str, Any]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Spans:
        for name, (module, cls_name, attr) in self.spans.items():
            owner: Any = importlib.import_module(module)
            owner = getattr(owner, cls_name) if cls_name else owner
            original = owner.__dict__[attr]
            self._originals.append((owner, attr, original))
            setattr(owner, attr, self._timed(name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, attr, original in reversed(self._originals):
            setattr(cls, attr, original)

    def _timed(self, name: str, original: Any) -> Any:
        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.seen[name].append(time.perf_counter() - start)
        return timed

    def mark(self) -> dict[str, int]:
        with self._lock:
            return {name: len(v) for name, v in self.seen.items()}

    def since(self, mark: dict[str, int]) -> dict[str, float]:
        """The time each span took since ``mark`` (summed: one call settles once)."""
        with self._lock:
            return {name: sum(v[mark[name]:]) for name, v in self.seen.items()}


class ServerTimer:
    """ASGI wrapper around the node's app: the server-side time of each infer request, from its first byte in to
    the last byte of its answer out (no client, no loopback wire)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[float] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or not str(scope.get("path", "")).endswith("/infer"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                self.seen.append(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, timed_send)


def raw_prove(ws: Any, model_id: str, doc: dict[str, Any], n: int) -> dict[str, Any]:
    log("raw prove: warm-up")
    ws.prove(model_id, doc)
    walls, inner = [], []
    for i in range(n):
        start = time.perf_counter()
        result = ws.prove(model_id, doc)
        walls.append(time.perf_counter() - start)
        inner.append(float(result.bundle.timings.get("prove_s", 0.0)))
        log(f"raw prove {i + 1}/{n}: {walls[-1]:.3f} s (ezkl.prove {inner[-1]:.3f} s)")
    return {"runs_s": [round(v, 4) for v in walls], "median_s": round(statistics.median(walls), 4),
            "ezkl_prove_runs_s": [round(v, 4) for v in inner],
            "ezkl_prove_median_s": round(statistics.median(inner), 4)}


def http_latency(base_url: str, account: Any, model_id: str, doc: dict[str, Any], n: int, cache: Path,
                 warmups: int, spans: Spans, server: ServerTimer | None = None) -> dict[str, Any]:
    from proofmarket.sdk.client import Client

    runs, server_prove = [], []
    inside: dict[str, list[float]] = {name: [] for name in spans.spans}
    with Client(base_url, account, cache_dir=cache, timeout=300, devnet=True) as sdk:
        for i in range(warmups):  # one per prover process of the node: each starts cold
            log(f"paid HTTP: warm-up call {i + 1}/{warmups}")
            if sdk.infer(model_id, doc).receipt is None:
                raise RuntimeError("the paid answer carries no receipt: are payments on?")
        served_from = len(server.seen) if server is not None else 0
        for i in range(n):
            mark = spans.mark()
            start = time.perf_counter()
            result = sdk.infer(model_id, doc)
            runs.append(time.perf_counter() - start)
            for name, took in spans.since(mark).items():
                inside[name].append(took)
            server_prove.append(float(result.bundle.get("timings", {}).get("prove_s", 0.0)))
            log(f"paid HTTP {i + 1}/{n}: {runs[-1]:.3f} s (ezkl.prove on the node {server_prove[-1]:.3f} s, "
                + ", ".join(f"{name} {v[-1]:.3f} s" for name, v in inside.items()) + ")")
    out: dict[str, Any] = {"runs_s": [round(v, 4) for v in runs], "median_s": round(statistics.median(runs), 4),
                           "node_ezkl_prove_median_s": round(statistics.median(server_prove), 4)}
    for name, values in inside.items():
        out[f"{name}_runs_s"] = [round(v, 4) for v in values]
        out[f"{name}_median_s"] = round(statistics.median(values), 4)
    verify = inside.get("client_verify", [0.0] * len(runs))  # the SDK's local check of the answer, not the node
    out["unsettled_runs_s"] = [round(r - c - v, 4) for r, c, v in zip(runs, inside["chain_settle"], verify,
                                                                       strict=True)]
    out["unsettled_median_s"] = round(statistics.median(out["unsettled_runs_s"]), 4)
    # what the node adds besides its prove and the settlement, measured inside each call (less sensitive to a
    # loaded machine than subtracting the separately measured raw prove)
    out["rest_runs_s"] = [round(u - p, 4) for u, p in zip(out["unsettled_runs_s"], server_prove, strict=True)]
    out["rest_median_s"] = round(statistics.median(out["rest_runs_s"]), 4)
    if server is not None and len(server.seen) - served_from == n:
        # the node's own work (issue 36): the request's server time less the prover's part (the hand-off to the
        # prover process and back) and the chain settlement: parse, payment check, job row, settle bookkeeping,
        # receipt, answer
        served = server.seen[served_from:]
        out["server_runs_s"] = [round(v, 4) for v in served]
        out["node_work_runs_s"] = [round(v - e - c, 4) for v, e, c in zip(served, inside["execute"],
                                                                          inside["chain_settle"], strict=True)]
        out["node_work_median_s"] = round(statistics.median(out["node_work_runs_s"]), 4)
    return out


def fund_payers(market: Any, model_id: str, count: int, calls: int) -> list[Any]:
    """``count`` fresh payer accounts with USDC for their calls over all levels (from the consumer's minted USDC)."""
    from eth_account import Account
    from eth_utils.crypto import keccak

    price = market.registry.get_model(model_id_for(market.accounts.owner.address, model_id)).spec.price
    payers = [Account.from_key(keccak(PAYER_SEED + str(i).encode())) for i in range(count)]
    for i, payer in enumerate(payers):
        need = price * sum(split(calls, level)[i] for level in LEVELS if i < level)
        held = market.usdc.balance_of(payer.address)
        if held < need:
            market.usdc.transfer(payer.address, need - held, market.accounts.consumer)
    log(f"funded {count} payers with {format_usdc(price)} USDC per call they make")
    return payers


def split(calls: int, level: int) -> list[int]:
    """Calls per client when ``level`` clients share ``calls`` calls."""
    return [calls // level + (1 if i < calls % level else 0) for i in range(level)]


def throughput(base_url: str, payers: list[Any], model_id: str, doc: dict[str, Any], level: int, calls: int,
               cache: Path) -> dict[str, Any]:
    from proofmarket.sdk.client import Client

    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    per_client = split(calls, level)

    def client_loop(i: int) -> None:
        with Client(base_url, payers[i], cache_dir=cache, timeout=300, devnet=True) as sdk:
            for _ in range(per_client[i]):
                start = time.perf_counter()
                try:
                    sdk.infer(model_id, doc)
                    with lock:
                        latencies.append(time.perf_counter() - start)
                except Exception as exc:  # counted, the level goes on
                    with lock:
                        errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    log(f"throughput: {level} client(s), {calls} calls")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=level) as pool:
        list(pool.map(client_loop, range(level)))
    wall = time.perf_counter() - start
    row = {"clients": level, "calls": calls, "ok": len(latencies), "failures": len(errors),
           "wall_s": round(wall, 3), "calls_per_s": round(len(latencies) / wall, 3) if wall else None,
           "p50_s": _r(pct(latencies, 0.5)), "p95_s": _r(pct(latencies, 0.95)), "errors": errors[:5]}
    log(f"throughput {level}: {row['calls_per_s']} calls/s, p50 {row['p50_s']} s, p95 {row['p95_s']} s, "
        f"{row['failures']} failures")
    return row


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def markdown(doc: dict[str, Any]) -> str:
    m, raw, http = doc["machine"], doc["raw_prove"], doc["http"]
    c = doc["config"]
    lines = [
        "# proofmarket bench: paid inference over HTTP vs raw prove (sample MLP)",
        "",
        f"{m['date']} · {m['cpu_count']} CPUs · {m['platform']} · grid {c['grid']} · logrows {doc['logrows']} · "
        f"{c['calls']} calls per measurement · prover workers {c['prover_workers']} · x402 on, loopback",
        "",
        "| measurement | median s | runs |",
        "|---|---|---|",
        f"| raw prove (Workspace.prove, warm worker) | {raw['median_s']:.4g} | {len(raw['runs_s'])} |",
        f"| ezkl.prove inside the worker | {raw['ezkl_prove_median_s']:.4g} | {len(raw['runs_s'])} |",
        f"| paid inference over HTTP (x402, sync) | {http['median_s']:.4g} | {len(http['runs_s'])} |",
        f"| of which the chain settlement (gate settle: transfer and its receipt) | "
        f"{http['chain_settle_median_s']:.4g} | {len(http['runs_s'])} |",
        f"| of which the runner's settle step (chain settlement, signed receipt, paid bundle, job row, hooks) | "
        f"{http['settle_step_median_s']:.4g} | {len(http['runs_s'])} |",
        f"| of which the SDK's local check of the answer (proof, receipt) | "
        f"{http.get('client_verify_median_s', 0.0):.4g} | {len(http['runs_s'])} |",
        f"| paid inference over HTTP minus its chain settlement and the SDK's check | {http['unsettled_median_s']:.4g} "
        f"| {len(http['runs_s'])} |",
        "",
        f"**HTTP / raw prove = {doc['ratio']:.3f}** (target <= {RATIO_TARGET}): **{doc['target']}**; "
        f"overhead (HTTP, x402 verify and settle, receipt) {(http['median_s'] - raw['median_s']) * 1000:.0f} ms "
        "a call, "
        f"of which the chain settlement {http['chain_settle_median_s'] * 1000:.0f} ms; **node overhead without the "
        f"settlement {doc['node_overhead_ms']:.0f} ms** a call (median of HTTP - settlement - SDK check, minus raw "
        "prove); "
        f"measured inside each call (HTTP - settlement - SDK check - the node's ezkl.prove) "
        f"{http['rest_median_s'] * 1000:.0f} ms",
        "",
        *_node_work_lines(doc),
        "| concurrent clients | calls | ok | failures | wall s | calls/s | p50 s | p95 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["throughput"]:
        lines.append(f"| {r['clients']} | {r['calls']} | {r['ok']} | {r['failures']} | {r['wall_s']:.3g} | "
                     f"{_cell(r['calls_per_s'])} | {_cell(r['p50_s'])} | {_cell(r['p95_s'])} |")
    return "\n".join(lines) + "\n"


def _node_work_lines(doc: dict[str, Any]) -> list[str]:
    """The node's own work per paid call (server time less the prover's part and the chain settlement), with the
    steps timed inside it."""
    http, work = doc["http"], doc.get("node_work_ms")
    if work is None:
        return []
    verdict = "PASS" if work <= doc["node_work_target_ms"] else "MISS"
    steps = [("terms (model, price, input check)", "terms"), ("payment check, funds held, job row, queued",
                                                                "payment_check"),
             ("answer (bundle read, headers, JSON)", "answer")]
    settle_rest = (http["settle_step_median_s"] - http["chain_settle_median_s"]) * 1000
    lines = [f"**The node's own work per paid call: {work:.1f} ms p50** (target <= {doc['node_work_target_ms']:.0f} "
             f"ms): **{verdict}** — each infer request's server time (first byte in to last byte out) less the "
             "prover's part (the hand-off to the prover process: witness, proof, self-verification, bundle) and the "
             "chain settlement. Steps inside it (medians):", "",
             "| step | ms |", "|---|---|"]
    lines += [f"| {label} | {http[f'{key}_median_s'] * 1000:.1f} |" for label, key in steps
              if f"{key}_median_s" in http]
    lines += [f"| settle bookkeeping (receipt, paid bundle, job row; the chain settlement excluded) | "
              f"{settle_rest:.1f} |", ""]
    return lines


def _cell(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from proofmarket.chain import Devnet, find_anvil
    from proofmarket.onchain import Market
    from proofmarket.systems.workspace import Workspace

    demo = Demo(args.home, tmp)
    with demo.stack:
        devnet = Devnet(tmp / "devnet", anvil=find_anvil())
        demo.step("start devnet", devnet.start, 60)
        demo.stack.callback(devnet.stop)
        settings = Settings(home=args.home, rpc_url=devnet.rpc_url, database_url=f"sqlite:///{tmp / 'node.db'}",
                            deployment_file=tmp / "deployment.json", payments="on",
                            prover_workers=args.workers, escrow_watcher="off",
                            proof_cache_size=0)  # every call proves: the same input is sent every time
        ws = Workspace(settings)
        demo.stack.callback(ws.close)
        market = demo.step("deploy contracts", lambda: Market.deploy(workspace=ws), 120)
        log(f"compile the sample MLP ({'one candidate' if args.quick else 'default grid'})")
        model_id = demo.step("compile model", lambda: compile_sample(ws), 1200)
        logrows = ws.prover.model(model_id)[0].logrows
        log(f"model {model_id} (logrows {logrows}) in {demo.report.timings['compile model']:.1f} s; register")
        demo.step("register model", lambda: market.register_model(model_id, PRICE, OWNER_SHARE_BPS), 120)
        doc = json.loads(sample_path("mlp", "input").read_text())

        raw = raw_prove(ws, model_id, doc, args.calls)

        spans = demo.stack.enter_context(Spans(SPANS))
        timers: list[ServerTimer] = []
        base_url = demo.step("start node", lambda: start_node(demo.stack, settings, model_id, market,
                                                              timers=timers), 60)
        log(f"node at {base_url}")
        http = http_latency(base_url, market.accounts.consumer, model_id, doc, args.calls, tmp / "client-cache",
                            warmups=args.workers, spans=spans, server=timers[0])
        payers = fund_payers(market, model_id, max(LEVELS), args.calls)
        rows = [throughput(base_url, payers, model_id, doc, level, args.calls, tmp / "client-cache")
                for level in LEVELS]
        ratio = http["median_s"] / raw["median_s"]
        log("shutting down")
    return {"machine": machine_info(), "logrows": logrows, "model_id": model_id,
            "config": {"calls": args.calls, "quick": args.quick, "grid": "quick" if args.quick else "default",
                       "prover_workers": args.workers, "levels": list(LEVELS), "price_usdc": PRICE},
            "raw_prove": raw, "http": http, "ratio": round(ratio, 4),
            "node_overhead_ms": round((http["unsettled_median_s"] - raw["median_s"]) * 1000, 1),
            "node_work_ms": None if "node_work_median_s" not in http else round(http["node_work_median_s"] * 1000, 1),
            "node_work_target_ms": NODE_WORK_TARGET_MS,
            "target": "PASS" if ratio <= RATIO_TARGET else "MISS", "throughput": rows,
            "setup_timings_s": {k: round(v, 2) for k, v in demo.report.timings.items()}}


def start_node(stack: contextlib.ExitStack, settings: Settings, model_id: str, market: Any | None,
               apps: list[Any] | None = None, timers: list[ServerTimer] | None = None,
               price_atomic: int = 10_000) -> str:
    """The node app (``create_app``) serving the model at its registry price (``price_atomic`` without a market),
    on a free loopback port; its URL once every prover process is warm (so the first measured call is not a cold
    start)."""
    import httpx
    import uvicorn

    from proofmarket.api import create_app
    from proofmarket.chain.devnet import free_port

    app = create_app(settings)
    if apps is not None:  # the caller reads the node's services (e.g. its rails)
        apps.append(app)
    stack.callback(app.state.services.close)
    price = market.registry.get_model(market.onchain_id(model_id)).spec.price if market is not None else price_atomic
    app.state.services.catalog.register(model_id, price_atomic=price,
                                        owner=market.accounts.owner.address if market is not None else None)
    port = free_port()
    served: Any = app
    if timers is not None:  # the caller reads each infer request's server time
        timers.append(ServerTimer(app))
        served = timers[-1]
    # the node command's own keep-alive: a client idle between calls keeps its connection (uvicorn's 5 s default
    # resets a request sent as the server closes it)
    server = uvicorn.Server(uvicorn.Config(served, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           timeout_keep_alive=KEEP_ALIVE_S))
    thread = threading.Thread(target=server.run, name="bench-node", daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(30)

    stack.callback(stop)
    deadline = time.monotonic() + 45
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the node did not start (see the log above)")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    while httpx.get(f"{url}/health", timeout=10).json()["provers_warm"] < settings.queue.prover_workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the node's {settings.queue.prover_workers} prover processes were not warm within 45 s")
        time.sleep(0.05)
    return url


def machine_info() -> dict[str, Any]:
    import ezkl

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "ezkl": getattr(ezkl, "__version__", None), "date": datetime.now(UTC).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=8, help="calls per measurement (>= 5; medians reported)")
    parser.add_argument("--quick", action="store_true", help="compile one settings candidate instead of the grid")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="results directory (http.json, http.md)")
    parser.add_argument("--workers", type=int, default=2, help="the node's prover processes")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("PROOFMARKET_HOME", ".demo")),
                        help="data folder (store, SRS cache), shared with make demo")
    args = parser.parse_args(argv)
    if args.calls < 5:
        parser.error("--calls >= 5")
    args.home = args.home.resolve()
    if args.quick:
        os.environ["PROOFMARKET_DEMO_GRID"] = "quick"
    else:
        os.environ.pop("PROOFMARKET_DEMO_GRID", None)
    with tempfile.TemporaryDirectory(prefix="proofmarket-http-bench-") as tmp:
        doc = run(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "http.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    (args.out / "http.md").write_text(table)
    log(f"done: {args.out / 'http.json'}, {args.out / 'http.md'}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
