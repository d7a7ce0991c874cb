"""Issue 20 item 6 (P3-06, P3-18): no charge without the result on the attested routes either.

A paid generation (plain or streamed) or attested ONNX infer whose settlement is still pending when the
facilitator stops waiting keeps its hold and its result: 202 with a job to poll; the result is delivered there
once the transfer is mined (charged once), or the job fails with nothing charged when the authorization
expires unused. Concurrent calls of one payer are held against its balance: funds for one, one runs.

Own anvil (chain time is moved forward here), a real node over HTTP, the in-process facilitator waiting 1 s."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402_helpers import PAY, Chain, Served, market_devnet, mlp_input, node_settings, requirements_of, signed_payload

from proofmarket.api import create_app
from proofmarket.chain import advance_time, dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.chain.devnet import automine_off
from proofmarket.samples import sample_path
from proofmarket.sdk.client import Client
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain]
PER_1K, ONNX_PRICE = 50_000, 7_000
MAX_TOKENS = 20  # charged 1,000 atomic units
GEN_PRICE = PER_1K * MAX_TOKENS // 1000
SHORT_WINDOW_S = 60  # an authorization signed to expire soon (the node accepts >= 5 s)


@dataclass
class Node:
    served: Served
    chain: Chain
    lm_id: str
    onnx_id: str
    owner: str

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def services(self) -> Any:
        return self.served.app.state.services


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    from proofmarket.systems.attested.tiny import build_tiny_lm

    data = tmp_path_factory.mktemp("attested-pending")
    with market_devnet(data / "chain") as chain, pytest.MonkeyPatch.context() as env:
        env.setenv("PROOFMARKET_FACILITATOR_WAIT_S", "1")
        env.setenv("PROOFMARKET_PAYMENT_MIN_VALIDITY_S", "5")
        settings = node_settings(data / "home", data / "node.db", chain.rpc_url, chain.deployment_file,
                                 settle_poll_s=0.2)
        ws = Workspace(settings)
        lm_id, _ = ws.compile_attested(build_tiny_lm(data / "tiny-llama"), max_tokens_cap=64)
        onnx_id, _ = ws.compile_attested(sample_path("mlp"))
        ws.close()
        app = create_app(settings)
        owner = dev_account(5, DEVNET_CHAIN_ID).address
        app.state.services.catalog.register(lm_id, price_atomic=PER_1K, owner=owner)
        app.state.services.catalog.register(onnx_id, price_atomic=ONNX_PRICE, owner=owner)
        with Served(app) as served:
            yield Node(served, chain, lm_id, onnx_id, owner)
        app.state.services.close()


def funded(node: Node, amount: int) -> LocalAccount:
    account: LocalAccount = Account.create()
    node.chain.usdc.transfer(account.address, amount, dev_account(7, DEVNET_CHAIN_ID))
    return account


def gen_url(node: Node) -> str:
    return f"{node.url}/v1/models/{node.lm_id}/generate"


def infer_url(node: Node) -> str:
    return f"{node.url}/v1/models/{node.onnx_id}/infer"


GEN_BODY = {"prompt": "the market", "max_tokens": MAX_TOKENS}


def payment(url: str, body: dict[str, Any], account: LocalAccount, valid_before: int | None = None) -> str:
    required = httpx.post(url, json=body, timeout=60)
    assert required.status_code == 402, required.text
    return signed_payload(account, requirements_of(required.headers["PAYMENT-REQUIRED"]), valid_before=valid_before)


def poll(node: Node, accepted: dict[str, Any], until: tuple[str, ...] = ("settled", "failed"),
         timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = httpx.get(f"{node.url}/v1/jobs/{accepted['id']}",
                                        headers={"X-Job-Token": accepted["access_token"]}, timeout=30).json()
        if job["status"] in until:
            return job
        assert time.monotonic() < deadline, f"job {accepted['id']} still {job['status']}"
        time.sleep(0.1)


def pending_call(node: Node, url: str, body: dict[str, Any], pay: str) -> dict[str, Any]:
    """The call made while nothing is mined: answered 202 with the job, still settling (nothing shown)."""
    response = httpx.post(url, json=body, headers={PAY: pay}, timeout=120)
    assert response.status_code == 202, response.text  # not 402 payment_settlement_failed
    accepted: dict[str, Any] = response.json()
    assert accepted["status"] == "settling" and accepted["access_token"]
    assert response.headers["Location"] == f"/v1/jobs/{accepted['id']}"
    job = poll(node, accepted, until=("settling",))
    assert job["result"] is None and job["links"]["proof"] is None  # the text waits for the money
    return accepted


def expire_unused(node: Node) -> None:
    """The authorization's window passes before the settlement transaction is mined: mined late, it reverts
    and the authorization stays unused (dropping it instead would leave a gap in the facilitator's nonces)."""
    advance_time(node.chain.client, SHORT_WINDOW_S * 2)


def delivered_or_not_charged(node: Node, url: str, body: dict[str, Any], price: int, *, mined: bool) -> dict[str, Any]:
    account = funded(node, price)
    before = node.chain.balances(account.address, node.owner)
    soon = node.chain.client.timestamp() + SHORT_WINDOW_S  # by chain time (moved forward by earlier tests)
    pay = payment(url, body, account, valid_before=None if mined else soon)
    with automine_off(node.chain.client):
        accepted = pending_call(node, url, body, pay)
        assert [p.payer for p in node.services.payments.gate.ledger.pending()] == [account.address]  # hold kept
        if mined:
            node.chain.client.rpc("evm_mine", [])
        else:
            expire_unused(node)
    job = poll(node, accepted)
    after = node.chain.balances(account.address, node.owner)
    if mined:
        assert job["status"] == "settled", job
        assert (before[0] - after[0], after[1] - before[1]) == (price, price)  # charged once
        answer = job["result"]["answer"]
        assert answer["payment"]["transaction"] == answer["receipt"]["typedData"]["message"]["transaction"]
        assert answer["bundle"]["receipt"] == answer["receipt"] and answer["bundle_cid"] == job["result"]["bundle_cid"]
    else:
        assert job["status"] == "failed" and job["error"]["code"] == "payment_settlement_failed", job
        assert job["result"] is None and after == before  # nothing charged, nothing shown
    assert node.services.payments.gate.ledger.pending() == []  # the hold is gone either way
    return job


# --- generate --------------------------------------------------------------------------------------------
def test_a_pending_generation_is_delivered_at_its_job_once_mined(node: Node) -> None:
    job = delivered_or_not_charged(node, gen_url(node), GEN_BODY, GEN_PRICE, mined=True)
    answer = job["result"]["answer"]
    assert answer["text"] and answer["text"] == answer["bundle"]["output"]["text"]
    assert answer["usage"]["charged_tokens"] == MAX_TOKENS


def test_a_pending_generation_that_expires_unused_charges_nothing(node: Node) -> None:
    delivered_or_not_charged(node, gen_url(node), GEN_BODY, GEN_PRICE, mined=False)


def test_a_pending_stream_ends_with_the_job_to_poll_and_the_text_is_delivered_there(node: Node) -> None:
    account = funded(node, GEN_PRICE)
    pay = payment(gen_url(node), GEN_BODY, account)
    events: list[tuple[str, Any]] = []
    with automine_off(node.chain.client):
        with httpx.stream("POST", gen_url(node), json={**GEN_BODY, "stream": True}, headers={PAY: pay},
                          timeout=120) as response:
            assert response.status_code == 200
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, json.loads(line[6:])))
        assert [e for e, _ in events] == ["pending"], events  # no unpaid text, no error
        pending = events[-1][1]
        assert pending["status"] == "settling" and pending["links"]["self"] == f"/v1/jobs/{pending['id']}"
        node.chain.client.rpc("evm_mine", [])
    job = poll(node, pending)
    assert job["status"] == "settled" and job["result"]["answer"]["text"]
    assert len(job["result"]["answer"]["tokens"]) == MAX_TOKENS


def test_the_sdk_follows_a_pending_generation_to_its_result(node: Node, tmp_path: Path) -> None:
    account = funded(node, GEN_PRICE)
    results: list[Any] = []
    with automine_off(node.chain.client), Client(node.url, account=account, cache_dir=tmp_path / "cache",
                                                 devnet=True) as sdk:
        sdk.poll_interval_s = 0.1
        thread = threading.Thread(target=lambda: results.append(sdk.generate(node.lm_id, "the market",
                                                                             max_tokens=MAX_TOKENS)))
        thread.start()
        deadline = time.monotonic() + 60
        while not node.services.calls.repo.settling_ids():
            assert time.monotonic() < deadline and thread.is_alive(), results
            time.sleep(0.1)
        node.chain.client.rpc("evm_mine", [])
        thread.join(60)
    assert results, "the SDK did not return"
    result = results[0]
    assert result.payment is not None and result.receipt is not None and result.text
    assert any("receipt signed by" in c for c in result.checks)
    assert node.chain.balances(account.address)[0] == 0


# --- attested ONNX infer ---------------------------------------------------------------------------------
def test_a_pending_attested_infer_is_delivered_at_its_job_once_mined(node: Node) -> None:
    job = delivered_or_not_charged(node, infer_url(node), mlp_input(), ONNX_PRICE, mined=True)
    assert job["result"]["output"] == job["result"]["answer"]["output"] and job["result"]["output"]


def test_a_pending_attested_infer_that_expires_unused_charges_nothing(node: Node) -> None:
    delivered_or_not_charged(node, infer_url(node), mlp_input(), ONNX_PRICE, mined=False)


# --- P3-18: the balance is held across a payer's calls ------------------------------------------------
def test_concurrent_generations_beyond_the_balance_are_refused_before_running(node: Node) -> None:
    poor = funded(node, GEN_PRICE)  # enough for one generation
    payments = [payment(gen_url(node), GEN_BODY, poor) for _ in range(3)]
    jobs, runs = node.services.calls.repo, node.services.queue.runner.metrics.call_seconds
    ran = sum(s.value for m in runs.collect() for s in m.samples if s.name.endswith("_count"))

    def call(pay: str) -> httpx.Response:
        return httpx.post(gen_url(node), json=GEN_BODY, headers={PAY: pay}, timeout=120)

    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(call, payments))
    assert sorted(r.status_code for r in responses) == [200, 402, 402], [r.text for r in responses]
    refused = [r for r in responses if r.status_code == 402]
    assert {r.json()["error"]["code"] for r in refused} == {"payment_insufficient_funds"}
    assert all(requirements_of(r.headers["PAYMENT-REQUIRED"]).amount == str(GEN_PRICE) for r in refused)
    now = sum(s.value for m in runs.collect() for s in m.samples if s.name.endswith("_count"))
    assert now - ran == 1  # only one generation ran
    assert len(jobs.by_payer(poor.address)) == 1
    assert node.chain.balances(poor.address) == [0]


def test_a_paid_generation_that_fails_charges_nothing_and_keeps_no_hold(node: Node,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from proofmarket.core.errors import ModelFilesMissing

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ModelFilesMissing("the weights are gone")

    account = funded(node, GEN_PRICE)
    pay = payment(gen_url(node), GEN_BODY, account)
    monkeypatch.setattr(node.services.attested, "run", broken)
    response = httpx.post(gen_url(node), json=GEN_BODY, headers={PAY: pay}, timeout=120)
    assert response.status_code >= 400 and response.json()["error"]["code"] == ModelFilesMissing.code
    [job] = node.services.calls.repo.by_payer(account.address)
    assert job.status == "failed" and job.error_code == ModelFilesMissing.code
    assert node.services.payments.gate.ledger.pending() == []
    assert node.chain.balances(account.address) == [GEN_PRICE]  # nothing charged


def test_the_web_app_follows_a_pending_generation_to_its_text(node: Node) -> None:
    """The page pays for a generation whose settlement is still pending (202): it says the payment is settling,
    follows the job, and shows the text once the transfer is mined (issue 40 item 4; headless Chromium, a devnet
    wallet injected)."""
    from browser_wallet import DevWallet, chromium_or_skip, connect

    sync_playwright, chromium = chromium_or_skip()
    payer = funded(node, 10 * GEN_PRICE)
    wallet = DevWallet(payer, node.chain.rpc_url, node.chain.client.chain_id)
    before = node.chain.balances(payer.address, node.owner)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 900})
            page.set_default_timeout(90_000)  # a loaded CI machine
            wallet.install(page)
            page.goto(f"{node.url}/app/#model/{node.lm_id}")
            connect(page)
            page.wait_for_selector("#prompt-fields:not([hidden])")
            page.fill("#call-prompt", "the market")
            page.fill("#call-max-tokens", str(MAX_TOKENS))
            with automine_off(node.chain.client):
                page.click("#call-button")
                deadline = time.monotonic() + 90
                while "settling" not in (page.text_content("#call-status") or ""):  # the page's CSP forbids eval
                    assert "bad" not in (page.get_attribute("#call-status", "class") or ""), \
                        page.text_content("#call-status")
                    assert time.monotonic() < deadline, page.text_content("#call-status")
                    time.sleep(0.2)
                node.chain.client.rpc("evm_mine", [])
            page.wait_for_selector("#call-status.ok")
            shown = page.text_content("#call-result") or ""
        finally:
            browser.close()
    assert "output" in shown and "attested" in shown
    after = node.chain.balances(payer.address, node.owner)
    assert (before[0] - after[0], after[1] - before[1]) == (GEN_PRICE, GEN_PRICE)  # charged once, on delivery
