"""The demo's calls, each a step with a time limit: a paid (or free) inference verified off-chain, by the SDK and
on chain; an escrow request the node's watcher fulfils; an attested generation re-executed by the SDK; and an
attested generation on the AttestationCourt, re-checked by a staked validator and paid after its window."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from proofmarket.chain.devkeys import dev_account
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.units import format_usdc
from proofmarket.demo.base import (
    LM_COURT_PRICE,
    LM_PRICE_PER_1K,
    LM_PROMPT,
    OWNER_SHARE_BPS,
    DemoError,
    Report,
    balances,
    checks_summary,
    console,
    delta,
    fmt_moves,
    http_json,
    payments_mode,
    released,
)
from proofmarket.samples import sample_meta, sample_path
from proofmarket.sdk.client import Client
from proofmarket.validator.process import Validator

T = TypeVar("T")


class Steps:
    """The calls of the story (``Demo`` sets ``report`` and ``tmp``)."""

    report: Report
    tmp: Path

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

    def _paid_call(self, base_url: str, market: Any, model_id: str, verifier: str) -> None:
        doc = json.loads(sample_path("mlp", "input").read_text())
        paid = payments_mode() == "on"
        before = balances(market)
        call = "paid inference (x402)" if paid else "inference over HTTP"
        if paid:
            body = self.step(call, lambda: x402_infer(base_url, market, model_id, doc), 300)
            checks = self.step("verify with the SDK", lambda: sdk_verify(base_url, body, self.tmp / "client-cache"),
                               300)
        else:
            body = self.step(call, lambda: http_json(
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
            console.print(f"sdk:      Client.verify (artifacts fetched from the node by CID): "
                          f"{checks_summary(checks)}, {self.report.timings['verify with the SDK']:.3f} s")
            if not receipt:
                raise DemoError("the paid answer carries no receipt")
            splitter = str(payment.get("pay_to"))
            self.step("release the x402 split", lambda: released(market, splitter), 60)
            moved = delta(before, balances(market))
            console.print(f"split:    {fmt_moves(moved)} (paid to the model's revenue splitter, released by "
                          "InferenceMarket.releaseSplit)")
            self.report.lines.append(f"x402 call moved: {fmt_moves(moved)} (owner, prover and platform by the "
                                     "registry's shares)")
        self._verify(market, bundle, verifier)

    def _verify(self, market: Any, bundle: dict[str, Any], verifier: str) -> None:
        report = self.step("verify off-chain", lambda: market.workspace.verify(bundle), 120)
        ms = self.report.timings["verify off-chain"] * 1000
        console.print(f"verify:   [bold green]valid[/] off-chain in {ms:.0f} ms: {checks_summary(report.checks)}")
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
        paid = payments_mode() == "on"
        before = balances(market)

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
        self.report.lines.append(f"attested call moved: {fmt_moves(delta(before, balances(market)))}")
        self.report.modes.append(("x402 generation (tiny LM)", f"attested, {result.verdict}"))

    def _court_call(self, base_url: str, market: Any, lm_id: str) -> None:
        """One attested generation escrowed on the AttestationCourt: committed, re-checked by a staked
        validator, paid once its challenge window closed (the devnet's clock is moved past it), and recorded
        as an ERC-8004 validation."""
        doc = {"prompt": LM_PROMPT, "max_tokens": 16}
        listed = self.step("register attested LM", lambda: market.register_model(lm_id, LM_COURT_PRICE,
                                                                                  OWNER_SHARE_BPS), 120)
        if listed.tx:
            self.report.txs["register LM"] = listed.tx.tx_hash
        staked, _ = self.step("node court stake", market.stake_court_node, 60)
        if staked:
            console.print(f"court:    node {market.accounts.prover.address} staked {format_usdc(staked)} USDC on the "
                          "AttestationCourt (slashed if a challenge against it wins)")
        validator = self._validator(base_url, market)
        before = balances(market)
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
            self._validator_check(validator, market, receipt.request_id)
            market.client.rpc("evm_increaseTime", [window + 1])  # devnet only: move the clock past the window
            market.client.rpc("evm_mine", [])
            body = self.step("court window", lambda: node.wait_court(receipt.request_id, ("paid", "slashed"), 120),
                             130)
        court_state = (body.get("settlement") or {}).get("court") or {}
        if court_state.get("status") != "paid":
            raise DemoError(f"the court request ended {court_state.get('status')}, not paid")
        console.print(f"court:    window closed unchallenged (devnet clock moved {window} s): the node finalized "
                      f"and was paid")
        self._validation(court_state.get("validation"), f"court request {receipt.request_id}",
                         "the CourtValidator {} from the court's verdict")
        self.report.lines.append(f"court moved: {fmt_moves(delta(before, balances(market)))}")
        self.report.modes.append(("court generation (tiny LM)", "attested, window passed, paid"))

    def _validator(self, base_url: str, market: Any) -> Validator:
        """A validator (a dev account) staked on the court and declared for the model it holds, before the
        commitment: stake or a declaration that comes after it weighs nothing on that request."""
        validator = Validator(market.client, market.court, dev_account(4, market.client.chain_id), market.workspace,
                              state_path=self.tmp / "validator.json", node_urls=[base_url],
                              from_block=market.deployment.contracts["AttestationCourt"].block)
        self.step("validator stake", validator.ensure_stake, 60)
        return validator

    def _validator_check(self, validator: Validator, market: Any, request_id: int) -> None:
        """The staked validator follows the court: if drawn, it fetches and re-executes the result."""
        court = market.court
        market.client.rpc("evm_mine", [])  # the draw uses the block after the commitment
        self.step("validator poll", validator.poll_once, 120)
        verdict = validator.state.verdicts.get(request_id)
        if verdict is None:
            console.print(f"validate: validator {validator.address} was not drawn for this result "
                          f"({court.params().sample_bps / 100:.0f} % sample): nobody challenged")
            return
        console.print(f"validate: validator {validator.address} was drawn: re-executed, "
                      f"{verdict['verdict']} ({verdict['reason']})")
        if verdict["verdict"] != "reproduced":
            raise DemoError(f"the validator found the court result {verdict['verdict']}")

    def _validation(self, validation: dict[str, Any] | None, request: str, answered_by: str) -> None:
        """The ERC-8004 validation record a settled request got, if any (``answered_by`` names the validator)."""
        if not validation:
            return
        score = f"{validation.get('response')}/100 ({validation.get('tag')})"
        console.print(f"erc8004:  validation record {score} answered by "
                      f"{answered_by.format(validation.get('validator'))}")
        self.report.lines.append(f"ERC-8004 validation of {request}: {score}")

    def _escrow(self, base_url: str, market: Any, model_id: str) -> None:
        doc = json.loads(sample_path("mlp", "samples").read_text())["inputs"][1]
        doc = {"inputs": doc}
        before = balances(market)
        receipt = self.step("escrow request on chain", lambda: market.request(model_id, doc), 60)
        if receipt.approve_tx:
            self.report.txs["escrow approve"] = receipt.approve_tx.tx_hash
        self.report.txs["escrow request"] = receipt.tx.tx_hash
        console.print(f"escrow:   request {receipt.request_id}: {format_usdc(receipt.amount)} USDC escrowed, "
                      f"commitment {receipt.commitment[:18]}...")
        with Client(base_url, timeout=60, poll_interval_s=0.2) as node:
            self.step("post escrow input", lambda: node.post_request_input(receipt.request_id, doc, receipt.salt), 60)
            body = self.step("escrow fulfilment", lambda: node.wait_request(receipt.request_id, 290), 300)
        if body["status"] == "failed":
            raise DemoError(f"the node failed the escrow request: {body['error']}")
        s = body["settlement"]
        if s.get("status") != "FULFILLED":
            raise DemoError(f"the escrow request was settled as {s.get('status')}, not fulfilled")
        self.report.txs["escrow fulfil"] = body["fulfil_tx"]
        # the fulfilment credits the owner's and the prover's shares on chain; one withdrawMany pays them out
        payout = self.step("escrow payout", lambda: market.withdraw([market.accounts.owner.address,
                                                                      market.accounts.prover.address]), 60)
        self.report.txs["escrow payout"] = payout.tx.tx_hash
        moved = delta(before, balances(market))
        fulfil = market.client.rpc("eth_getTransactionReceipt", [body["fulfil_tx"]]) if body.get("fulfil_tx") else None
        gas = f", {int(fulfil['gasUsed'], 16):,} gas" if fulfil else ""
        console.print(f"escrow:   fulfilled by the watcher in {self.report.timings['escrow fulfilment']:.1f} s{gas}, "
                      f"bundle {body['bundle_cid']}, output {[[round(v, 4) for v in row] for row in s['output']]}")
        console.print(f"payout:   the owner's and the prover's credited shares paid in one withdrawMany "
                      f"({payout.tx.gas_used:,} gas): {format_usdc(payout.total)} USDC")
        self.report.lines.append(f"escrow request {receipt.request_id}: fulfilled, bundle {body['bundle_cid']}")
        self._validation(s.get("validation"), f"request {receipt.request_id}", "the ZkValidator {} from chain state")
        self.report.lines.append(f"escrow moved: {fmt_moves(moved)}")


def x402_infer(base_url: str, market: Any, model_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The consumer dev account pays over x402 with the SDK client."""

    with Client(base_url, market.accounts.consumer, timeout=300, devnet=True) as sdk:
        return dataclasses.asdict(sdk.infer(model_id, doc))


def sdk_verify(base_url: str, body: dict[str, Any], cache: Path) -> list[str]:
    """What a consumer does next: verify the paid bundle with artifacts fetched from the node by CID."""
    with Client(base_url, cache_dir=cache, timeout=300, devnet=True) as sdk:
        return list(sdk.verify(body["bundle"]).checks)
