"""The rehearsal's story on the rehearsed chain: the facilitator and the node as real commands (over HTTP), the
operator's models compiled and listed with the CLI, then the calls a consumer makes (the SDK and the market library,
signed by the rehearsal's consumer key): an x402 paid proven call and an escrow request (when a ceremony-style SRS
could be imported), an x402 attested generation, and an attested court call re-checked by a staked validator."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from proofmarket.chain.client import ChainClient
from proofmarket.chain.devnet import free_port
from proofmarket.core.profiles import ChainProfile
from proofmarket.core.settings import Settings, X402Settings
from proofmarket.core.units import format_usdc
from proofmarket.demo.base import (
    LM_COURT_PRICE,
    LM_PRICE_PER_1K,
    LM_PROMPT,
    OWNER_SHARE_BPS,
    PRICE,
    DemoError,
    console,
)
from proofmarket.demo.rehearsal_chain import PlacedUsdc, require_local_anvil
from proofmarket.demo.rehearsal_keys import RehearsalKeys
from proofmarket.demo.rehearsal_procs import Cli
from proofmarket.demo.steps import Steps
from proofmarket.onchain import Market
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.samples import sample_path
from proofmarket.sdk.client import Client
from proofmarket.systems.attested.tiny import build_tiny_lm
from proofmarket.systems.ezkl import ezkl_calls, srs
from proofmarket.validator.process import Validator

REHEARSAL_SRS_LOGROWS = 12  # the sample MLP compiles at logrows 10: a larger file serves it


class RehearsalStory(Steps):
    """The calls (``Rehearsal`` sets the chain, the keys, the CLI and ``lack``)."""

    home: Path
    stack: contextlib.ExitStack
    keys: RehearsalKeys
    client: ChainClient
    profile: ChainProfile
    placed: PlacedUsdc

    def lack(self, piece: str) -> None:
        raise NotImplementedError

    def attempt(self, name: str, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    def story(self, cli: Cli) -> None:
        facilitator = self._facilitator(cli)
        lm_id = self._attested_model(cli)
        proven = self._proven_model(cli)
        proven_id, node_cli = proven if proven is not None else (None, cli)
        # the node sells the owner's listings and signs (receipts, settlements, escrow and court answers) with
        # its own key: the market role of its process is the node's account, not the owner's
        node_env: dict[str, str] = {"PROOFMARKET_PAYMENTS": "on", "PROOFMARKET_ESCROW_WATCHER": "on",
                                    "PROOFMARKET_ESCROW_POLL_S": "0.5", "PROOFMARKET_PROVER_WORKERS": "1",
                                    "PROOFMARKET_MODEL_OWNER": self.keys.address("owner"),
                                    "PROOFMARKET_OWNER_KEYSTORE": str(self.keys.keystore("node"))}
        if "PROOFMARKET_PRIVATE_KEY" in cli.env:  # plain keys (before keystores): the node's
            node_env["PROOFMARKET_PRIVATE_KEY"] = self.keys.accounts["node"].key.hex()
        if facilitator is not None:
            node_env.update(facilitator[1])
        market = self._market()
        staked, _ = self.step("node court stake", market.stake_court_node, 120)
        console.print(f"court:    node {market.accounts.prover.address} staked {format_usdc(staked)} USDC on the "
                      "AttestationCourt")
        if proven_id:
            self.step("node market stake", market.setup_prover, 120)
            console.print(f"market:   node {market.accounts.prover.address} authorised by the admin and staked on "
                          "the InferenceMarket")
        # the tiny LM is sold per 1,000 tokens at the node's price; the MLP at its registry listing's
        models = [f"{lm_id}={LM_PRICE_PER_1K}", *([proven_id] if proven_id else [])]
        url = self._node(node_cli.with_env(**node_env), models)
        # the x402 calls first: the court's part moves the anvil clock days ahead, and a consumer signs its
        # authorization's validity in wall-clock time (as on a real chain, where the two agree)
        if proven_id:
            self.attempt("x402 proven call", lambda: self._proven_call(url, proven_id))
            self.attempt("escrow request", lambda: self._escrow(url, market, proven_id))
        self.attempt("x402 attested generation", lambda: self._x402_generation(url, lm_id))
        self._court_generation(cli, url, market, lm_id)
        self._confirmations_seen(cli)

    # --- services ------------------------------------------------------------------------------------
    def _facilitator(self, cli: Cli) -> tuple[str, dict[str, str]] | None:
        """'proofmarket facilitator serve' (with a bearer token where the CLI takes one); its URL and what the node's
        environment needs to use it."""
        if not cli.offers("facilitator", "serve"):
            self.lack("'proofmarket facilitator serve' (brief F): the node settles with its in-process facilitator")
            return None
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"PROOFMARKET_FACILITATOR_URL": url}
        if "facilitator_token" in X402Settings.model_fields:
            env["PROOFMARKET_FACILITATOR_TOKEN"] = secrets.token_urlsafe(24)
        served = cli.with_env(**env)
        ready = f"{url}/health" if "PROOFMARKET_FACILITATOR_TOKEN" in env else f"{url}/supported"
        self.step("facilitator serve", lambda: served.serve("facilitator", "facilitator", "serve", "--port",
                                                             str(port), "--log-level", "warning", ready_url=ready), 120)
        guard = ""
        if "PROOFMARKET_FACILITATOR_TOKEN" in env:
            status = httpx.get(f"{url}/supported", timeout=10).status_code
            if status != 401:
                raise DemoError(f"the facilitator answered /supported without its token with {status}, not 401")
            guard = "; a call without its bearer token is refused (401)"
        console.print(f"facil.:   'proofmarket facilitator serve' at {url} (its own key "
                      f"{self.keys.address('facilitator')}{guard}): the node verifies and settles over HTTP")
        self.report.lines.append(f"facilitator: served over HTTP at {url}{guard}")
        return url, env

    def _node(self, cli: Cli, models: list[str]) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = ["node", "--port", str(port), "--workers", "1", "--log-level", "warning"]
        cli.env["PROOFMARKET_PUBLIC_URL"] = url  # off the devnet the node's sign-in is bound to its public URL
        for model in models:
            args += ["--model", model]
        self.step("start node", lambda: cli.serve("node", *args, ready_url=f"{url}/health", timeout=180), 200)
        console.print(f"node:     'proofmarket node' at {url}, key {self.keys.address('node')}, waiting "
                      f"{self.profile.confirmations} confirmations on {self.profile.name} before a settlement or an "
                      "escrow/court event counts")
        self.report.lines.append(f"node: {self.profile.confirmations} confirmations per settlement and event")
        return url

    def _market(self) -> Market:
        """The market library as the rehearsal's accounts see it: the owner lists, the node stakes, the consumer
        requests (off the devnet ``RoleAccounts.for_chain`` would give one key every role)."""
        a = self.keys.accounts
        settings = Settings(home=self.home, rpc_url=self.client.rpc_url, chain=self.profile.name)
        market = Market.open(settings, accounts=RoleAccounts(a["owner"], a["owner"], a["consumer"], a["node"]))
        self.stack.callback(market.close)
        return market

    def _confirmations_seen(self, cli: Cli) -> None:
        """What the node said while it waited for the profile's confirmations (its log)."""
        depth = self.profile.confirmations
        said = [line for line in cli.tail("node", 10_000).split(" | ") if f"of {depth} confirmations" in line]
        console.print(f"confirm:  the node's log holds {len(said)} wait(s) for {depth} confirmations"
                      + (f", e.g. '{said[0].strip()[:160]}'" if said else ""))
        self.report.lines.append(f"confirmations: {depth} per the profile; the node logged {len(said)} wait(s)")

    # --- models --------------------------------------------------------------------------------------
    def _attested_model(self, cli: Cli) -> str:
        folder = self.home / "tiny-llama"
        self.step("build tiny LM", lambda: build_tiny_lm(folder, train_steps=150), 300)
        doc = self.step("compile attested LM", lambda: cli.run(
            "compile", str(folder), "--mode", "attested", "--name", "tiny-llama", "--max-tokens-cap", "128"), 300)
        lm_id = str(doc["model_id"])
        listed = self.step("register attested LM", lambda: cli.run(
            "model", "register", lm_id, "--price", LM_COURT_PRICE, "--owner-share", str(OWNER_SHARE_BPS)), 300)
        console.print(f"attested: 'proofmarket compile --mode attested' -> {lm_id}; 'model register' at "
                      f"{LM_COURT_PRICE} USDC ({listed.get('action', 'listed')}) by the owner "
                      f"{self.keys.address('owner')}")
        return lm_id

    def _proven_model(self, cli: Cli) -> tuple[str, Cli] | None:
        """The sample MLP on a rehearsal SRS: a gen_srs file imported with 'srs import' under a pin the rehearsal
        supplies (in its own processes only), compiled and listed with the CLI; the node authorised and staked."""
        if not cli.offers("srs", "import"):
            self.lack("'proofmarket srs import' of a ceremony-style SRS (brief S): no proven model can be served "
                      f"on {self.profile.name} (a dev SRS is refused there), so the x402 paid proven call and the "
                      "escrow request are skipped")
            return None
        path = self.tmp / f"rehearsal-srs-{REHEARSAL_SRS_LOGROWS}"
        self.step("make rehearsal SRS", lambda: ezkl_calls.gen_srs(path, REHEARSAL_SRS_LOGROWS), 300)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        pinned = cli.with_srs_pin(REHEARSAL_SRS_LOGROWS, sha256)
        srs.CEREMONY_SRS_SHA256[sha256] = REHEARSAL_SRS_LOGROWS  # the consumer's checks, in this process
        imported = self.step("srs import", lambda: pinned.run("srs", "import", str(path), "--logrows",
                                                              str(REHEARSAL_SRS_LOGROWS)), 120)
        console.print(f"srs:      [bold yellow]REHEARSAL SRS, NOT A CEREMONY[/]: a gen_srs file for logrows "
                      f"{REHEARSAL_SRS_LOGROWS} (sha256 {sha256[:16]}..., proofs on it can be forged by whoever made "
                      "it) imported with 'proofmarket srs import' under a pin the rehearsal supplies to its own "
                      f"processes; stored as {imported.get('cid') or imported}")
        samples = sample_path("mlp", "samples")
        doc = self.step("compile model", lambda: pinned.run(
            "compile", str(sample_path("mlp")), "--sample", str(samples), "--name", "mlp", timeout=900), 900)
        model_id = str(doc["model_id"])
        kind = doc["manifest"]["srs"]["kind"]
        if kind != "ceremony":
            raise DemoError(f"the model compiled on SRS kind {kind!r}, not the imported (pinned) file")
        listed = self.step("register model", lambda: cli.run(
            "model", "register", model_id, "--price", PRICE, "--owner-share", str(OWNER_SHARE_BPS), timeout=300), 300)
        console.print(f"proven:   'proofmarket compile' -> {model_id} (logrows {doc['manifest']['logrows']}, SRS "
                      f"{kind}: the rehearsal's pin); 'model register' at {PRICE} USDC ({listed.get('action')})")
        self.report.lines.append(f"SRS: rehearsal gen_srs file (NOT a ceremony) imported under the rehearsal's pin, "
                                 f"sha256 {sha256}")
        return model_id, pinned

    # --- calls ---------------------------------------------------------------------------------------
    def _proven_call(self, url: str, model_id: str) -> None:
        doc = json.loads(sample_path("mlp", "input").read_text())
        self._terms(url, f"/v1/models/{model_id}/infer", doc)
        result, paid, tx = self._consumer_call(url, "x402 proven call", "x402 settlement",
                                           lambda sdk: sdk.infer(model_id, doc))
        console.print(f"x402:     proven call: output {result.output}, paid {format_usdc(paid)} USDC (tx {tx}, "
                      f"counted after {self.profile.confirmations} confirmations); the SDK's checks: "
                      f"{len(result.checks)} passed")
        if paid <= 0:
            raise DemoError("the proven call was answered but nothing was paid")
        self.report.lines.append(f"x402 proven call: {format_usdc(paid)} USDC, verified by the SDK")

    def _consumer_call(self, url: str, step: str, tx_name: str, call: Callable[[Client], Any]) -> tuple[Any, int, Any]:
        """One call of the consumer's SDK as the rehearsal step ``step``: (its result, what the consumer paid, the
        settlement transaction, recorded in the report as ``tx_name``)."""
        consumer = self.keys.accounts["consumer"]
        before = self.placed.token.balance_of(consumer.address)

        def run() -> Any:
            with Client(url, consumer, timeout=300, cache_dir=self.tmp / "client-cache") as sdk:
                return call(sdk)

        result = self.step(step, run, 300)
        paid = before - self.placed.token.balance_of(consumer.address)
        tx = (result.payment or {}).get("transaction")
        if tx:
            self.report.txs[tx_name] = str(tx)
        return result, paid, tx

    def _escrow(self, url: str, market: Market, model_id: str) -> None:
        doc = {"inputs": json.loads(sample_path("mlp", "samples").read_text())["inputs"][1]}
        receipt = self.step("escrow request on chain", lambda: market.request(model_id, doc), 120)
        self.report.txs["escrow request"] = receipt.tx.tx_hash
        with Client(url, timeout=60, poll_interval_s=0.5) as node:
            self.step("post escrow input", lambda: node.post_request_input(receipt.request_id, doc, receipt.salt), 60)
            body = self.step("escrow fulfilment", lambda: node.wait_request(receipt.request_id, 290), 300)
        settlement = body.get("settlement") or {}
        if body["status"] == "failed" or settlement.get("status") != "FULFILLED":
            raise DemoError(f"the escrow request ended {body['status']}/{settlement.get('status')}: "
                            f"{body.get('error')}")
        self.report.txs["escrow fulfil"] = body["fulfil_tx"]
        console.print(f"escrow:   request {receipt.request_id}: {format_usdc(receipt.amount)} USDC escrowed by the "
                      f"consumer, fulfilled by the node's watcher after {self.profile.confirmations} confirmations "
                      f"(tx {body['fulfil_tx']}), bundle {body['bundle_cid']}")
        self.report.lines.append(f"escrow request {receipt.request_id}: fulfilled")

    def _terms(self, url: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """The node's x402 terms (PAYMENT-REQUIRED of an unpaid call), checked against the chain before paying:
        network, asset and the EIP-712 domain the consumer is asked to sign in must be the profile's."""
        response = httpx.post(f"{url}{route}", json=body, timeout=60)
        header = response.headers.get("PAYMENT-REQUIRED")
        if response.status_code != 402 or not header:
            raise DemoError(f"an unpaid call to {route} answered {response.status_code} without x402 terms")
        accepts = json.loads(base64.b64decode(header))["accepts"][0]
        extra = accepts.get("extra") or {}
        want = (self.profile.network, str(self.profile.usdc).lower(), self.profile.usdc_name, self.profile.usdc_version)
        got = (accepts.get("network"), str(accepts.get("asset")).lower(), extra.get("name"), extra.get("version"))
        console.print(f"terms:    the node asks {accepts.get('amount')} atomic USDC on {got[0]}, asset {got[1]}, "
                      f"EIP-712 domain {got[2]!r}/{got[3]!r}")
        if got != want:
            raise DemoError(f"the node's x402 terms {got} are not the chain's {want}: a consumer's authorization "
                            "signed in that domain is refused by the token (ERC3009InvalidSignature)")
        return dict(accepts)

    def _x402_generation(self, url: str, lm_id: str) -> None:
        self._terms(url, f"/v1/models/{lm_id}/generate", {"prompt": LM_PROMPT, "max_tokens": 48})
        result, paid, tx = self._consumer_call(url, "x402 attested generation", "x402 generation",
                                           lambda sdk: sdk.generate(lm_id, LM_PROMPT, max_tokens=48, reexecute=True))
        console.print(f"x402:     {LM_PROMPT!r} -> {result.text!r}; paid {format_usdc(paid)} USDC (the token at "
                      f"{self.placed.token.address}, tx {tx}, settled after {self.profile.confirmations} "
                      f"confirmations); {result.verdict} by re-execution")
        if result.verdict != "reproduced" or paid <= 0:
            raise DemoError(f"the attested generation ended {result.verdict}, {paid} atomic USDC paid")
        self.report.lines.append(f"x402 attested generation: {format_usdc(paid)} USDC for up to 48 tokens at "
                                 f"{format_usdc(LM_PRICE_PER_1K)} USDC per 1,000, {result.verdict}")

    def _court_generation(self, cli: Cli, url: str, market: Market, lm_id: str) -> None:
        court = market.court
        assert court is not None
        self._sample_everything(cli, court)
        validator = Validator(market.client, court, self.keys.decrypt("validator"), market.workspace,
                              state_path=self.tmp / "validator.json", node_urls=[url],
                              from_block=market.deployment.contracts["AttestationCourt"].block)
        self.step("validator stake", validator.ensure_stake, 120)
        console.print(f"validate: validator {validator.address} staked (its key from its keystore)")
        doc = {"prompt": LM_PROMPT, "max_tokens": 16}
        receipt = self.step("court request on chain", lambda: market.request(lm_id, doc), 120)
        self.report.txs["court request"] = receipt.tx.tx_hash
        window = court.params().window
        console.print(f"court:    request {receipt.request_id}: {format_usdc(receipt.amount)} USDC escrowed on "
                      f"{court.address} by the consumer")
        with Client(url, timeout=60, poll_interval_s=0.5) as node:
            self.step("post court input", lambda: node.post_court_input(receipt.request_id, doc), 60)
            body = self.step("court commitment", lambda: node.wait_court(receipt.request_id, ("committed",), 180),
                             200)
            if body["status"] == "failed":
                raise DemoError(f"the node failed the court request: {body['error']}")
            commit = self.client.w3.eth.get_transaction_receipt(body["fulfil_tx"])
            self.report.txs["court commit"] = body["fulfil_tx"]
            self._validate(validator, int(commit["blockNumber"]), receipt.request_id)
            require_local_anvil(self.client)  # moving the clock is the rehearsal's, on anvil only
            self.client.rpc("evm_increaseTime", [window + 1])
            self.client.rpc("evm_mine", [])
            body = self.step("court window", lambda: node.wait_court(receipt.request_id, ("paid", "slashed"), 180),
                             200)
        status = ((body.get("settlement") or {}).get("court") or {}).get("status")
        if status != "paid":
            raise DemoError(f"the court request ended {status}, not paid")
        console.print(f"court:    committed in tx {self.report.txs['court commit']}; challenge window {window} s "
                      "passed (anvil clock moved), the node finalized and was paid")
        self.report.lines.append(f"court request {receipt.request_id}: committed, re-checked, window passed, paid")

    def _sample_everything(self, cli: Cli, court: Any) -> None:
        """Every validator re-checks every result (sample 100 %), so that the rehearsal's validator is drawn: a
        court parameter change scheduled with 'admin court', applied with 'admin court --apply' once the court's
        fixed delay passed (the anvil clock moved past it)."""
        delay = court.params_delay()
        self.step("admin court schedule", lambda: cli.run("admin", "court", "--sample-bps", "10000"), 120)
        require_local_anvil(self.client)
        self.client.rpc("evm_increaseTime", [delay + 1])
        self.client.rpc("evm_mine", [])
        self.step("admin court apply", lambda: cli.run("admin", "court", "--apply"), 120)
        console.print(f"court:    'admin court --sample-bps 10000' scheduled, applied with 'admin court --apply' after "
                      f"the court's {delay} s delay (anvil clock moved): every validator re-checks every result")

    def _validate(self, validator: Validator, commit_block: int, request_id: int) -> None:
        """The validator reads the commitment once it has the profile's confirmations on top, and re-executes it."""
        depth = self.profile.confirmations
        deadline = time.monotonic() + 60
        while self.client.block_number() < commit_block + depth:
            if time.monotonic() > deadline:
                raise DemoError(f"no {depth} blocks on top of the commitment's block {commit_block} within 60 s")
            time.sleep(0.25)
        self.step("validator poll", validator.poll_once, 180)
        verdict = validator.state.verdicts.get(request_id)
        if verdict is None:
            raise DemoError(f"validator {validator.address} did not re-check court request {request_id} although "
                            "the court samples every result")
        console.print(f"validate: validator {validator.address} drawn after {depth} confirmations of the "
                      f"commitment: re-executed, {verdict['verdict']} ({verdict['reason']})")
        if verdict["verdict"] != "reproduced":
            raise DemoError(f"the validator found the court result {verdict['verdict']}")
        self.report.lines.append(f"validator: drawn, {verdict['verdict']}")
