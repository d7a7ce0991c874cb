"""The demo's run: a fresh devnet and market contracts, the sample MLP compiled and registered, a tiny attested
LM committed, a node serving both, then the calls (``Steps``) and the report."""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.markup import escape  # an install line's [extra] is text, not a style

from proofmarket.api import create_app
from proofmarket.chain import Devnet, find_anvil
from proofmarket.chain.devnet import free_port
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.demo.base import (
    LM_PRICE_PER_1K,
    OWNER_SHARE_BPS,
    PRICE,
    QUICK_CANDIDATE,
    DemoError,
    Report,
    console,
    knobs,
    payments_mode,
    run_guarded,
)
from proofmarket.demo.steps import Steps
from proofmarket.onchain import Market
from proofmarket.samples import sample_meta, sample_path
from proofmarket.systems.attested.tiny import build_tiny_lm
from proofmarket.systems.ezkl.batch_compile import parse_sizes
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace


def main() -> int:
    try:
        home = knobs().home.resolve()
    except ProofMarketError as exc:  # a PROOFMARKET_DEMO_* setting refused (config_check.ConfigError)
        console.print(f"[bold red]demo failed[/]: {exc.message}")
        return 2

    def run() -> int:
        with tempfile.TemporaryDirectory(prefix="proofmarket-demo-") as tmp:
            return Demo(home, Path(tmp)).run()

    return run_guarded("demo", knobs().timeout_s, run)


class Demo(Steps):
    def __init__(self, home: Path, tmp: Path) -> None:
        self.home, self.tmp = home, tmp
        self.report = Report()
        self.stack = contextlib.ExitStack()

    def run(self) -> int:
        with self.stack:
            return self._run()

    # --- steps --------------------------------------------------------------------------------
    def _run(self) -> int:
        meta = sample_meta("mlp")
        console.rule("proofmarket demo")
        console.print(f"model:    sample 'mlp': {meta['description']}")
        console.print(f"data:     {self.home}")

        devnet = Devnet(self.tmp / "devnet", anvil=find_anvil())
        self.step("start devnet", devnet.start, 60)
        self.stack.callback(devnet.stop)
        settings = Settings(home=self.home, rpc_url=devnet.rpc_url, database_url=f"sqlite:///{self.tmp / 'node.db'}",
                            deployment_file=self.tmp / "deployment.json", payments=payments_mode(),
                            prover_workers=1, escrow_watcher="on", escrow_confirmations=0, escrow_poll_s=0.25)
        console.print(f"chain:    anvil at {devnet.rpc_url} (chain id {devnet.chain_id})")

        ws = Workspace(settings)
        self.stack.callback(ws.close)
        market = self.step("deploy contracts", lambda: Market.deploy(workspace=ws), 120)
        d = market.deployment
        console.print(f"market:   InferenceMarket {d.market}, ModelRegistry {d.registry}, USDC {d.usdc}")

        model_id = self.step("compile model", lambda: compile_sample(ws), 900)
        m = ws.prover.model(model_id)[0]
        picked = m.tuning.get("picked")
        console.print(f"compile:  {self.report.timings['compile model']:.1f} s -> model id {model_id} "
                      f"({picked}, logrows {m.logrows}, objective {m.tuning.get('objective', {}).get('name', '-')}, "
                      f"SRS {m.srs.kind})")
        bench = bench_row("gas", "mlp", str(picked))
        if bench:
            console.print(f"bench:    bench/gas.md measured these settings at commit {bench['commit']}: proof "
                          f"{bench['proof_bytes']:,} bytes, verifyProof {bench['gas']['verifyProof alone']:,} gas, "
                          f"fulfill {bench['gas']['fulfill (first)']:,} gas the first time on a fresh market, "
                          f"{bench['gas']['fulfill (steady)']:,} after")
        registration = self.step("register model", lambda: market.register_model(model_id, PRICE, OWNER_SHARE_BPS),
                                 120)
        verifier = registration.verifier.address if registration.verifier else ""
        if registration.tx:
            self.report.txs["register model"] = registration.tx.tx_hash
        if registration.verifier and registration.verifier.tx:
            self.report.txs["deploy verifier"] = registration.verifier.tx.tx_hash
        console.print(f"register: {PRICE} USDC per call, owner share {OWNER_SHARE_BPS / 100:.0f} %, "
                      f"verifier {verifier}")

        lm_id: str | None = None
        if attested_installed():
            lm_id = self.step("commit attested LM", lambda: compile_lm(ws), 300)
            lm = ws.attested.runtime.manifest(lm_id)
            console.print(f"attested: {lm.name} ({lm.architecture}, {lm.weights.tensors} tensors) -> model id "
                          f"{lm_id}, weights root {lm.weights.root[:18]}..., mode attested (no ZK proof)")
        else:
            console.print(f"attested: skipped: {escape(ATTESTED_MISSING)}")

        base_url = self.step("start node", lambda: self._start_node(settings, model_id, market, lm_id), 60)
        console.print(f"node:     {base_url} (OpenAPI at {base_url}/docs), escrow watcher on")
        agent_id, _ = self.step("register ERC-8004 agent", lambda: market.register_agent(
            f"{base_url}/.well-known/agent-registration.json"), 60)
        assert market.erc8004 is not None  # register_agent refuses a deployment without the registries
        console.print(f"agent:    ERC-8004 agent {agent_id} on {market.erc8004.identity.registry_id()} "
                      f"(registration file {base_url}/.well-known/agent-registration.json)")

        self._paid_call(base_url, market, model_id, verifier)
        self._escrow(base_url, market, model_id)
        if lm_id is not None:
            self._attested_call(base_url, market, lm_id)
            self._court_call(base_url, market, lm_id)
        else:
            self.report.modes.append(("attested generation", "skipped (pip install 'proofmarket[attested]')"))
        self._book()
        self._print_report()
        return 0

    def _book(self) -> None:
        """The node's book over every rail, reconciled with the chain (what ``proofmarket ledger check`` runs)."""
        money = getattr(self, "money", None)
        if money is None:
            return
        checked = self.step("ledger check", money.check, 60)
        transfers = money.book.transfers(limit=1000)
        kinds = sorted({f"{t.rail} {t.kind}" for t in transfers if t.phase != "void"})
        console.print(f"book:     {len(transfers)} transfers ({', '.join(kinds)}); ledger check against the chain: "
                      + ("no difference" if checked.ok else f"{len(checked.differences)} differences: "
                         f"{checked.differences[:3]}"))
        if not checked.ok:
            raise DemoError("the node's book differs from the chain")

    def _start_node(self, settings: Settings, model_id: str, market: Any, lm_id: str | None) -> str:

        app = create_app(settings)
        self.stack.callback(app.state.services.close)
        self.money = app.state.services.money
        app.state.services.catalog.register(model_id, price_atomic=market.registry.get_model(
            market.onchain_id(model_id)).spec.price, owner=market.accounts.owner.address)
        if lm_id is not None:
            app.state.services.catalog.register(lm_id, price_atomic=LM_PRICE_PER_1K,
                                                owner=market.accounts.owner.address)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        thread = threading.Thread(target=server.run, name="demo-node", daemon=True)
        thread.start()

        def stop() -> None:
            server.should_exit = True
            thread.join(30)

        self.stack.callback(stop)
        deadline = time.monotonic() + 45
        while not server.started:
            if not thread.is_alive():
                raise DemoError("the node stopped while starting (see the log above)")
            if time.monotonic() > deadline:
                raise DemoError("the node did not start within 45 s")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        while True:  # ready once its prover processes are up, so the paid call below measures a warm node
            health = httpx.get(f"{url}/health", timeout=10)
            if health.status_code != 200:
                raise DemoError(f"the node's /health answered {health.status_code}: {health.text[:200]}")
            if health.json()["provers_warm"] >= settings.queue.prover_workers or time.monotonic() > deadline:
                return url
            time.sleep(0.05)

    def _print_report(self) -> None:
        console.rule("report")
        for line in self.report.lines:
            console.print(line)
        console.print("modes:")
        for name, verdict in self.report.modes:
            console.print(f"  {name:<28} {escape(verdict)}")
        self.report.print_chain_and_time(18)
        console.rule("done: everything shut down")


def bench_row(name: str, model: str, settings: str) -> dict[str, Any] | None:
    """The row of a bench file (bench/NAME.json in a source checkout) measured at the same settings, or None."""
    path = Path(__file__).resolve().parents[3] / "bench" / f"{name}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    commit = (doc.get("stamp") or {}).get("commit", "?")
    row = next((r for r in doc.get("rows", []) if r.get("model") == model and r.get("settings") == settings), None)
    return {**row, "commit": commit} if row else None


def compile_sample(ws: Any) -> str:
    samples = json.loads(sample_path("mlp", "samples").read_text())
    if knobs().grid == "quick":
        options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(ws.settings.srs_dir),
                                 candidates=[Candidate(*QUICK_CANDIDATE)],
                                 batch_sizes=parse_sizes(ws.settings.queue.batch_sizes))
        result = ws.prover.compile(sample_path("mlp"), samples, options)
    else:
        result = ws.compile(sample_path("mlp"), samples, profile=PrivacyProfile())
    model_id: str = result.model_id
    return model_id


ATTESTED_MISSING = ("the attested mode (a tiny LM, its generation and its court call) needs torch and transformers: "
                    "pip install 'proofmarket[attested]'")


def attested_installed() -> bool:
    """Whether the attested extra (torch, transformers, tokenizers) is installed: a wheel without it runs the proven
    story only, and says so."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers", "tokenizers"))
    except (ImportError, ValueError):  # a module present but unimportable, or blocked (sys.modules entry None)
        return False


def compile_lm(ws: Any) -> str:
    """The sample attested model: a tiny Llama built offline and trained for a few seconds (kept in HOME)."""
    folder = ws.settings.home / "tiny-llama"
    if not (folder / "model.safetensors").is_file():
        build_tiny_lm(folder, train_steps=150)
    model_id: str = ws.compile_attested(folder, name="tiny-llama", max_tokens_cap=128)[0]
    return model_id
