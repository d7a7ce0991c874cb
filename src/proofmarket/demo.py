"""``make demo``: the whole story on a local devnet, then everything shut down.

    1. start an anvil devnet (fresh, in a temporary folder) and deploy the market contracts
    2. compile the sample MLP and register it on chain (its Solidity verifier deployed)
    3. start a node (uvicorn on a free loopback port, in a background thread) serving the model,
       with its escrow watcher following the market
    4. pay-per-call inference over HTTP: x402 with the SDK client when the node has payments (the consumer
       dev account pays USDC), else a free call; verify the proof locally and on chain (``eth_call`` to the
       model's verifier)
    5. one escrow request: the consumer escrows the price on chain, posts its input to the node, the
       watcher proves and fulfils it
    6. one attested text generation (mode ``attested``: a tiny causal LM built offline, too small to need it
       but the same path a large one takes): paid over x402 with the SDK, re-checked by re-execution
    6b. one attested generation escrowed on the AttestationCourt: the node commits it, a staked validator
       re-executes it if drawn, the devnet clock moves past the challenge window, the node finalizes and is
       paid, and the CourtValidator writes its ERC-8004 validation record
    7. a short report: output, bundle CID, transaction hashes, timings, USDC moved per party, and each
       call's mode next to its verdict (``proven, verified on chain``; ``attested, reproduced``)

Data (store, SRS cache) lives in ``PROOFMARKET_HOME`` (default ./.demo); the chain and the node's database
are fresh on every run. Every step has a time limit and fails with a clear message (exit code != 0).
``PROOFMARKET_DEMO_GRID=quick`` compiles one settings candidate instead of searching the grid (tests).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from pydantic import ValidationError
from rich.console import Console

from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import DemoSettings, Settings
from proofmarket.core.units import format_usdc
from proofmarket.samples import sample_meta, sample_path

console = Console(soft_wrap=True, highlight=False)
T = TypeVar("T")

PRICE = "0.25"
LM_PRICE_PER_1K = 50_000  # 0.05 USDC per 1,000 output tokens
LM_COURT_PRICE = "0.05"  # per escrowed generation on the AttestationCourt
LM_PROMPT = "a zero-knowledge proof"
OWNER_SHARE_BPS = 7_000
QUICK_CANDIDATE = (256, 3, 10, 1)


class DemoError(Exception):
    pass


@dataclass
class Report:
    timings: dict[str, float] = field(default_factory=dict)
    txs: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    modes: list[tuple[str, str]] = field(default_factory=list)


@functools.cache
def _knobs() -> DemoSettings:
    return DemoSettings()


def main() -> int:
    try:
        home = _knobs().home.resolve()
    except ValidationError as exc:
        console.print(f"[bold red]demo failed[/]: bad PROOFMARKET_DEMO_* setting: {exc}")
        return 2
    watchdog = threading.Timer(_knobs().timeout_s, _give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        with tempfile.TemporaryDirectory(prefix="proofmarket-demo-") as tmp:
            return Demo(home, Path(tmp)).run()
    except (DemoError, ProofMarketError) as exc:
        message = exc.message if isinstance(exc, ProofMarketError) else str(exc)
        console.print(f"[bold red]demo failed[/]: {message}")
        return exc.exit_code if isinstance(exc, ProofMarketError) else 1
    except KeyboardInterrupt:
        console.print("[bold red]demo interrupted[/]")
        return 130
    finally:
        watchdog.cancel()


def _give_up() -> None:
    console.print(f"[bold red]demo failed[/]: still running after {_knobs().timeout_s:.0f} s, giving up")
    os._exit(1)


class Demo:
    def __init__(self, home: Path, tmp: Path) -> None:
        self.home, self.tmp = home, tmp
        self.report = Report()
        self.stack = contextlib.ExitStack()

    def run(self) -> int:
        with self.stack:
            return self._run()

    # --- steps --------------------------------------------------------------------------------
    def step(self, name: str, fn: Callable[[], T], timeout_s: float) -> T:
        """Run one step in a thread with a time limit; record its wall time."""
        result: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                result.append(fn())
            except BaseException as exc:  # handed to the main thread
                error.append(exc)

        started = time.perf_counter()
        with console.status(f"{name} ..."):
            worker = threading.Thread(target=target, name=f"demo: {name}", daemon=True)
            worker.start()
            worker.join(timeout_s)
        elapsed = time.perf_counter() - started
        self.report.timings[name] = elapsed
        if worker.is_alive():
            raise DemoError(f"step '{name}' did not finish within {timeout_s:.0f} s")
        if error:
            exc = error[0]
            detail = exc.message if isinstance(exc, ProofMarketError) else f"{type(exc).__name__}: {exc}"
            raise DemoError(f"step '{name}' failed: {detail}") from exc
        return result[0]

    def _run(self) -> int:
        from proofmarket.chain import Devnet, find_anvil
        from proofmarket.market import Market
        from proofmarket.systems.workspace import Workspace

        meta = sample_meta("mlp")
        console.rule("proofmarket demo")
        console.print(f"model:    sample 'mlp': {meta['description']}")
        console.print(f"data:     {self.home}")

        devnet = Devnet(self.tmp / "devnet", anvil=find_anvil())
        self.step("start devnet", devnet.start, 60)
        self.stack.callback(devnet.stop)
        settings = Settings(home=self.home, rpc_url=devnet.rpc_url, database_url=f"sqlite:///{self.tmp / 'node.db'}",
                            deployment_file=self.tmp / "deployment.json", payments=_payments_mode(),
                            prover_workers=1, escrow_watcher="on", escrow_confirmations=0, escrow_poll_s=0.25)
        console.print(f"chain:    anvil at {devnet.rpc_url} (chain id 31337)")

        ws = Workspace(settings)
        self.stack.callback(ws.close)
        market = self.step("deploy contracts", lambda: Market.deploy(workspace=ws), 120)
        d = market.deployment
        console.print(f"market:   InferenceMarket {d.market}, ModelRegistry {d.registry}, USDC {d.usdc}")

        model_id = self.step("compile model", lambda: _compile(ws), 900)
        m = ws.prover.model(model_id)[0]
        console.print(f"compile:  {self.report.timings['compile model']:.1f} s -> model id {model_id} "
                      f"(logrows {m.logrows}, SRS {m.srs.kind})")
        registration = self.step("register model", lambda: market.register_model(model_id, PRICE, OWNER_SHARE_BPS),
                                 120)
        verifier = registration.verifier.address if registration.verifier else ""
        if registration.tx:
            self.report.txs["register model"] = registration.tx.tx_hash
        if registration.verifier and registration.verifier.tx:
            self.report.txs["deploy verifier"] = registration.verifier.tx.tx_hash
        console.print(f"register: {PRICE} USDC per call, owner share {OWNER_SHARE_BPS / 100:.0f} %, "
                      f"verifier {verifier}")

        lm_id = self.step("commit attested LM", lambda: _compile_lm(ws), 300)
        lm = ws.attested.runtime.manifest(lm_id)
        console.print(f"attested: {lm.name} ({lm.architecture}, {lm.weights.tensors} tensors) -> model id {lm_id}, "
                      f"weights root {lm.weights.root[:18]}..., mode attested (no ZK proof)")

        base_url = self.step("start node", lambda: self._start_node(settings, model_id, market, lm_id), 60)
        console.print(f"node:     {base_url} (OpenAPI at {base_url}/docs), escrow watcher on")
        agent_id, _ = self.step("register ERC-8004 agent", lambda: market.register_agent(
            f"{base_url}/.well-known/agent-registration.json"), 60)
        console.print(f"agent:    ERC-8004 agent {agent_id} on {market.erc8004.identity.registry_id()} "
                      f"(registration file {base_url}/.well-known/agent-registration.json)")

        self._paid_call(base_url, market, model_id, verifier)
        self._escrow(base_url, market, model_id)
        self._attested_call(base_url, market, lm_id)
        self._court_call(base_url, market, lm_id)
        self._print_report()
        return 0

    def _start_node(self, settings: Settings, model_id: str, market: Any, lm_id: str) -> str:
        import uvicorn

        from proofmarket.api import create_app
        from proofmarket.chain.devnet import free_port

        app = create_app(settings)
        self.stack.callback(app.state.services.close)
        app.state.services.catalog.register(model_id, price_atomic=market.registry.get_model(
            market.onchain_id(model_id)).spec.price, owner=market.accounts.owner.address)
        app.state.services.catalog.register(lm_id, price_atomic=LM_PRICE_PER_1K, owner=market.accounts.owner.address)
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
            if health.json()["provers_warm"] >= settings.prover_workers or time.monotonic() > deadline:
                return url
            time.sleep(0.05)

    def _paid_call(self, base_url: str, market: Any, model_id: str, verifier: str) -> None:
        doc = json.loads(sample_path("mlp", "input").read_text())
        paid = _payments_mode() == "on"
        before = _balances(market)
        call = "paid inference (x402)" if paid else "inference over HTTP"
        if paid:
            body = self.step(call, lambda: _x402_infer(base_url, market, model_id, doc), 300)
            checks = self.step("verify with the SDK", lambda: _sdk_verify(base_url, body, self.tmp / "client-cache"),
                               300)
        else:
            body = self.step(call, lambda: _http(
                "POST", f"{base_url}/v1/models/{model_id}/infer", json=doc, timeout=300), 300)
        bundle, cid = body["bundle"], body["bundle_cid"]
        values = body["output"][0] if isinstance(body["output"][0], list) else body["output"]
        labels = sample_meta("mlp")["labels"]
        best = max(range(len(values)), key=lambda i: values[i])
        console.print(f"input:    {doc['input_data'][0]}")
        console.print(f"output:   {[round(v, 4) for v in values]} -> {labels[best]}")
        console.print(f"proof:    bundle {cid}, {(len(bundle['proof']['hex']) - 2) // 2} bytes, "
                      f"prove {bundle['timings']['prove_s']:.3f} s, HTTP call "
                      f"{self.report.timings[call]:.3f} s")
        self.report.lines.append(f"inference: output {[round(v, 4) for v in values]} ({labels[best]}), bundle {cid}")
        if paid:
            payment = body.get("payment") or {}
            tx = payment.get("transaction") or payment.get("tx_hash") or payment.get("txHash")
            if tx:
                self.report.txs["x402 settlement"] = str(tx)
            receipt = body.get("receipt")
            amount = format_usdc(int(payment.get("amount", 0)))
            console.print(f"payment:  {amount} USDC from {payment.get('payer')} to {payment.get('pay_to')} over "
                          f"x402{', tx ' + str(tx) if tx else ''}; node receipt {'signed' if receipt else 'MISSING'}")
            console.print(f"sdk:      Client.verify (artifacts fetched from the node by CID): {_checks(checks)}, "
                          f"{self.report.timings['verify with the SDK']:.3f} s")
            if not receipt:
                raise DemoError("the paid answer carries no receipt")
            splitter = str(payment.get("pay_to"))
            self.step("release the x402 split", lambda: _released(market, splitter), 60)
            moved = _delta(before, _balances(market))
            console.print(f"split:    {_fmt_moves(moved)} (paid to the model's revenue splitter, released by "
                          "InferenceMarket.releaseSplit)")
            self.report.lines.append(f"x402 call moved: {_fmt_moves(moved)} (owner, prover and platform by the "
                                     "registry's shares)")
        self._verify(market, bundle, verifier)

    def _verify(self, market: Any, bundle: dict[str, Any], verifier: str) -> None:
        report = self.step("verify off-chain", lambda: market.workspace.verify(bundle), 120)
        ms = self.report.timings["verify off-chain"] * 1000
        console.print(f"verify:   [bold green]valid[/] off-chain in {ms:.0f} ms: {_checks(report.checks)}")
        calldata = bundle["proof"]["evm_calldata"]
        client = market.client

        def on_chain() -> tuple[bool, int, str]:
            good = client.rpc("eth_call", [{"to": verifier, "data": calldata}, "latest"])
            gas = int(client.rpc("eth_estimateGas", [{"to": verifier, "data": calldata}]), 16)
            flipped = calldata[:300] + ("0" if calldata[300] != "0" else "1") + calldata[301:]
            try:
                client.rpc("eth_call", [{"to": verifier, "data": flipped}, "latest"])
                tampered = "accepted (unexpected)"
            except Exception:
                tampered = "reverted"
            return int(good, 16) == 1, gas, tampered

        ok, gas, tampered = self.step("verify on chain", on_chain, 60)
        if not ok:
            raise DemoError(f"the verifier at {verifier} returned false for a valid proof")
        console.print(f"onchain:  eth_call verifyProof on {verifier} -> [bold green]true[/] ({gas:,} gas); "
                      f"one flipped proof byte -> {tampered}")
        self.report.lines.append(f"verified: off-chain and on chain (verifyProof {gas:,} gas)")
        self.report.modes.append(("x402 inference (mlp)", "proven, verified on chain"))

    def _attested_call(self, base_url: str, market: Any, lm_id: str) -> None:
        from proofmarket.sdk.client import Client

        paid = _payments_mode() == "on"
        before = _balances(market)

        def call() -> Any:
            with Client(base_url, market.accounts.consumer if paid else None, timeout=300, devnet=True,
                        cache_dir=self.tmp / "client-cache") as sdk:
                return sdk.generate(lm_id, LM_PROMPT, max_tokens=48, reexecute=True)

        result = self.step("attested generation", call, 300)
        bundle = result.bundle
        console.print(f"generate: {LM_PROMPT!r} -> {result.text!r} ({len(result.tokens)} tokens, "
                      f"{result.finish_reason})")
        console.print(f"attest:   bundle {result.bundle_cid}, {len(bundle['proof']['commitments'])} activation "
                      f"commitment(s) of {sum(len(c) // 2 - 1 for c in bundle['proof']['commitments'])} bytes, "
                      f"signed by {bundle['proof']['attestation']['signer']}")
        if result.payment:
            tx = result.payment.get("transaction")
            self.report.txs["x402 generation"] = str(tx)
            console.print(f"payment:  {format_usdc(int(result.payment['amount']))} USDC for up to 48 tokens at "
                          f"{format_usdc(LM_PRICE_PER_1K)} USDC per 1,000 (the cap is charged), tx {tx}")
        console.print(f"recheck:  [bold yellow]attested[/], [bold green]{result.verdict}[/]: the SDK fetched the "
                      "weights by CID and re-ran one prefill pass over prompt + output")
        if result.verdict != "reproduced":
            raise DemoError(f"the attested generation was not reproduced: {result.verdict}")
        self.report.lines.append(f"attested generation: {result.text!r}, bundle {result.bundle_cid}")
        self.report.lines.append(f"attested call moved: {_fmt_moves(_delta(before, _balances(market)))}")
        self.report.modes.append(("x402 generation (tiny LM)", f"attested, {result.verdict}"))

    def _court_call(self, base_url: str, market: Any, lm_id: str) -> None:
        """One attested generation escrowed on the AttestationCourt: committed, re-checked by a staked
        validator, paid once its challenge window closed (the devnet's clock is moved past it), and recorded
        as an ERC-8004 validation."""
        from proofmarket.chain.devkeys import dev_account
        from proofmarket.sdk.client import Client
        from proofmarket.validator.process import Validator

        doc = {"prompt": LM_PROMPT, "max_tokens": 16}
        listed = self.step("register attested LM", lambda: market.register_model(lm_id, LM_COURT_PRICE,
                                                                                  OWNER_SHARE_BPS), 120)
        if listed.tx:
            self.report.txs["register LM"] = listed.tx.tx_hash
        staked, _ = self.step("node court stake", market.stake_court_node, 60)
        if staked:
            console.print(f"court:    node {market.accounts.prover.address} staked {format_usdc(staked)} USDC on the "
                          "AttestationCourt (slashed if a challenge against it wins)")
        before = _balances(market)
        receipt = self.step("court request on chain", lambda: market.request(lm_id, doc), 60)
        self.report.txs["court request"] = receipt.tx.tx_hash
        court = market.court
        window = court.params().window
        console.print(f"court:    request {receipt.request_id}: {format_usdc(receipt.amount)} USDC escrowed on the "
                      f"AttestationCourt {court.address} for node {receipt.node}")
        with Client(base_url, timeout=60, poll_interval_s=0.2) as node:
            posted = self.step("post court input", lambda: node.post_court_input(receipt.request_id, doc), 60)
            body = self.step("court commitment", lambda: node.wait_court(receipt.request_id, ("committed",), 120),
                             130)
            if body["status"] == "failed":
                raise DemoError(f"the node failed the court request: {body['error']}")
            self.report.txs["court commit"] = body["fulfil_tx"]
            bundle = node.court_bundle(receipt.request_id, posted["access_token"])
            console.print(f"court:    committed in tx {body['fulfil_tx']}: output {bundle['output']['text']!r}; "
                          f"challenge window {window} s")
            validator = Validator(market.client, court, dev_account(4, market.client.chain_id), market.workspace,
                                  state_path=self.tmp / "validator.json", node_urls=[base_url],
                                  from_block=market.deployment.contracts["AttestationCourt"].block)
            self.step("validator stake", validator.ensure_stake, 60)
            market.client.rpc("evm_mine", [])  # the draw uses the block after the commitment
            self.step("validator poll", validator.poll_once, 120)
            verdict = validator.state.verdicts.get(receipt.request_id)
            if verdict is None:
                console.print(f"validate: validator {validator.address} was not drawn for this result "
                              f"({court.params().sample_bps / 100:.0f} % sample): nobody challenged")
            else:
                console.print(f"validate: validator {validator.address} was drawn: re-executed, "
                              f"{verdict['verdict']} ({verdict['reason']})")
                if verdict["verdict"] != "reproduced":
                    raise DemoError(f"the validator found the court result {verdict['verdict']}")
            market.client.rpc("evm_increaseTime", [window + 1])  # devnet only: move the clock past the window
            market.client.rpc("evm_mine", [])
            body = self.step("court window", lambda: node.wait_court(receipt.request_id, ("paid", "slashed"), 120),
                             130)
        court_state = (body.get("settlement") or {}).get("court") or {}
        if court_state.get("status") != "paid":
            raise DemoError(f"the court request ended {court_state.get('status')}, not paid")
        console.print(f"court:    window closed unchallenged (devnet clock moved {window} s): the node finalized "
                      f"and was paid")
        validation = court_state.get("validation") or {}
        if validation:
            console.print(f"erc8004:  validation record {validation.get('response')}/100 ({validation.get('tag')}) "
                          f"answered by the CourtValidator {validation.get('validator')} from the court's verdict")
            self.report.lines.append(f"ERC-8004 validation of court request {receipt.request_id}: "
                                     f"{validation.get('response')}/100 ({validation.get('tag')})")
        self.report.lines.append(f"court moved: {_fmt_moves(_delta(before, _balances(market)))}")
        self.report.modes.append(("court generation (tiny LM)", "attested, window passed, paid"))

    def _escrow(self, base_url: str, market: Any, model_id: str) -> None:
        doc = json.loads(sample_path("mlp", "samples").read_text())["inputs"][1]
        doc = {"inputs": doc}
        before = _balances(market)
        receipt = self.step("escrow request on chain", lambda: market.request(model_id, doc), 60)
        if receipt.approve_tx:
            self.report.txs["escrow approve"] = receipt.approve_tx.tx_hash
        self.report.txs["escrow request"] = receipt.tx.tx_hash
        console.print(f"escrow:   request {receipt.request_id}: {format_usdc(receipt.amount)} USDC escrowed, "
                      f"commitment {receipt.commitment[:18]}...")
        from proofmarket.sdk.client import Client

        with Client(base_url, timeout=60, poll_interval_s=0.2) as node:
            self.step("post escrow input", lambda: node.post_request_input(receipt.request_id, doc, receipt.salt), 60)
            body = self.step("escrow fulfilment", lambda: node.wait_request(receipt.request_id, 290), 300)
        if body["status"] == "failed":
            raise DemoError(f"the node failed the escrow request: {body['error']}")
        s = body["settlement"]
        if s.get("status") != "FULFILLED":
            raise DemoError(f"the escrow request was settled as {s.get('status')}, not fulfilled")
        self.report.txs["escrow fulfil"] = body["fulfil_tx"]
        moved = _delta(before, _balances(market))
        console.print(f"escrow:   fulfilled by the watcher in {self.report.timings['escrow fulfilment']:.1f} s, "
                      f"bundle {body['bundle_cid']}, output {[[round(v, 4) for v in row] for row in s['output']]}")
        self.report.lines.append(f"escrow request {receipt.request_id}: fulfilled, bundle {body['bundle_cid']}")
        validation = s.get("validation") or {}
        if validation:
            console.print(f"erc8004:  validation record {validation.get('response')}/100 ({validation.get('tag')}) "
                          f"answered by the ZkValidator {validation.get('validator')} from chain state")
            self.report.lines.append(f"ERC-8004 validation of request {receipt.request_id}: "
                                     f"{validation.get('response')}/100 ({validation.get('tag')})")
        self.report.lines.append(f"escrow moved: {_fmt_moves(moved)}")

    def _print_report(self) -> None:
        console.rule("report")
        for line in self.report.lines:
            console.print(line)
        console.print("modes:")
        for name, verdict in self.report.modes:
            console.print(f"  {name:<28} {verdict}")
        console.print("transactions:")
        for name, tx in self.report.txs.items():
            console.print(f"  {name:<18} {tx}")
        console.print("timings:")
        for name, seconds in self.report.timings.items():
            console.print(f"  {name:<24} {seconds:8.3f} s")
        console.rule("done: everything shut down")


# --- helpers ------------------------------------------------------------------------------------
def _payments_mode() -> Literal["on", "off"]:
    """x402 when the SDK client and the node's payment gate are both there, else free calls."""
    try:
        from proofmarket.payments import x402_rail  # noqa: F401
        from proofmarket.sdk.client import Client  # noqa: F401
    except ImportError:
        return "off"
    return _knobs().payments


def _x402_infer(base_url: str, market: Any, model_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The consumer dev account pays over x402 with the SDK client."""
    import dataclasses

    from proofmarket.sdk.client import Client

    with Client(base_url, market.accounts.consumer, timeout=300, devnet=True) as sdk:
        return dataclasses.asdict(sdk.infer(model_id, doc))


def _sdk_verify(base_url: str, body: dict[str, Any], cache: Path) -> list[str]:
    """What a consumer does next: verify the paid bundle with artifacts fetched from the node by CID."""
    from proofmarket.sdk.client import Client

    with Client(base_url, cache_dir=cache, timeout=300, devnet=True) as sdk:
        return list(sdk.verify(body["bundle"]).checks)


def _compile(ws: Any) -> str:
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    samples = json.loads(sample_path("mlp", "samples").read_text())
    if _knobs().grid == "quick":
        from proofmarket.systems.ezkl.compiler import CompileOptions
        from proofmarket.systems.ezkl.srs import SrsProvider
        from proofmarket.systems.ezkl.tuning import Candidate

        options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(ws.settings.srs_dir),
                                 candidates=[Candidate(*QUICK_CANDIDATE)])
        result = ws.prover.compile(sample_path("mlp"), samples, options)
    else:
        result = ws.compile(sample_path("mlp"), samples, profile=PrivacyProfile())
    model_id: str = result.model_id
    return model_id


def _compile_lm(ws: Any) -> str:
    """The sample attested model: a tiny Llama built offline and trained for a few seconds (kept in HOME)."""
    from proofmarket.systems.attested.tiny import build_tiny_lm

    folder = ws.settings.home / "tiny-llama"
    if not (folder / "model.safetensors").is_file():
        build_tiny_lm(folder, train_steps=150)
    model_id: str = ws.compile_attested(folder, name="tiny-llama", max_tokens_cap=128)[0]
    return model_id


def _checks(checks: list[str]) -> str:
    receipt = any("receipt" in check for check in checks)
    return f"{len(checks)} checks passed{' (proof and the node receipt)' if receipt else ' (proof)'}"


def _http(method: str, url: str, *, timeout: float, expect: int = 200, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.request(method, url, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise DemoError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != expect:
        raise DemoError(f"{method} {url} answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def _balances(market: Any) -> dict[str, int]:
    a = market.accounts
    held = {name: market.usdc.balance_of(acc.address) for name, acc in
            (("consumer", a.consumer), ("owner", a.owner), ("prover", a.prover))}
    held["platform"] = market.market.platform_balance()
    return held


def _released(market: Any, splitter: str, timeout_s: float = 60.0) -> None:
    """Wait until the node has released the x402 payment held by the splitter (owner / prover / platform)."""
    deadline = time.monotonic() + timeout_s
    while market.usdc.balance_of(splitter) > 0:
        if time.monotonic() > deadline:
            raise DemoError(f"the node did not release the x402 split held by {splitter} within {timeout_s:.0f} s")
        time.sleep(0.2)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


def _fmt_moves(moved: dict[str, int]) -> str:
    return ", ".join(f"{name} {'+' if v >= 0 else '-'}{format_usdc(abs(v))} USDC" for name, v in moved.items())


if __name__ == "__main__":
    sys.exit(main())
