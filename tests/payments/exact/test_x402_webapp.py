"""The web app in headless Chromium (Playwright driving Debian's chromium; no browser download) against a paid node
on the devnet, with an injected EIP-1193 provider backed by a devnet key: connect, pay for a call through the x402
client library (eth_signTypedData_v4), see the output, verify the answer in the page (valid), tamper (not valid),
find the call in the history (personal_sign); a wrong-shaped input, a rejected signature and a wallet on the wrong
chain are refused with a message and cost nothing. Screenshots go to tests/screenshots."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from browser_wallet import (
    DevWallet,
    chromium_or_skip,
    connect,
    connected_page,
    fill_request,
    serious_violations,
    with_axe,
)
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from x402.http import decode_payment_response_header
from x402_helpers import (
    PRICE,
    Chain,
    Served,
    funded_wallet,
    mlp_input,
    node_settings,
    requirements_of,
    signed_payload,
)

from proofmarket.api import create_app
from proofmarket.chain import dev_account

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def _payer() -> LocalAccount:
    account: LocalAccount = Account.from_key(keccak(b"proofmarket-webapp-payer"))
    return account


def test_a_wallet_pays_verifies_in_the_page_and_finds_its_history(node: Served, chain: Chain, mlp_id: str,
                                                                 tmp_path: Path) -> None:
    sync_playwright, chromium = chromium_or_skip()
    payer = _payer()
    wallet = DevWallet(payer, chain.rpc_url, chain.client.chain_id)
    chain.usdc.mint(payer.address, 10 * PRICE, dev_account(0, chain.client.chain_id))
    shots = ROOT / "tests" / "screenshots"
    shots.mkdir(exist_ok=True)

    def balance() -> int:
        return chain.usdc.balance_of(payer.address)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = with_axe(browser.new_page(viewport={"width": 1024, "height": 900}))
        page.set_default_timeout(90_000)  # a loaded CI machine
        wallet.install(page)
        page.goto(f"{node.url}/app/#model/{mlp_id}")
        connect(page)
        assert payer.address.lower() in (page.text_content("#wallet-status") or "").lower()
        page.wait_for_selector("#model:not([hidden])")

        # a wrong-shaped input: refused by the node before any payment
        before = balance()
        fill_request(page, {"input_data": [[1.0, 2.0]]})
        page.click("#call-button")
        page.wait_for_selector("#call-status.bad")
        assert "input_shape" in (page.text_content("#call-status") or "") and balance() == before

        # a rejected signature: nothing paid
        wallet.reject = True
        fill_request(page, mlp_input())
        page.evaluate("document.getElementById('call-status').className = ''")
        page.click("#call-button")
        page.wait_for_selector("#call-status.bad")
        assert "rejected" in (page.text_content("#call-status") or "") and balance() == before
        wallet.reject = False

        # a wallet on another chain: refused in the page, nothing paid
        wallet.chain_id = 1
        page.click("#connect-button")
        page.wait_for_selector("#wallet-status.bad")
        page.evaluate("document.getElementById('call-status').className = ''")
        page.click("#call-button")
        page.wait_for_selector("#call-status.bad")
        assert "chain 1" in (page.text_content("#call-status") or "") and balance() == before
        wallet.chain_id = chain.client.chain_id
        connect(page)

        # pay and run: output, proof size, timings, receipt; charged the price once
        page.evaluate("document.getElementById('call-status').className = ''")
        page.click("#call-button")
        page.wait_for_selector("#call-status.ok, #call-status.bad", timeout=180_000)
        assert "ok" in (page.get_attribute("#call-status", "class") or ""), page.text_content("#call-status")
        result = page.text_content("#call-result") or ""
        assert "proof size" in result and " USDC from" in result and "signed by" in result
        assert "atomic" not in result  # amounts in USDC
        assert before - balance() == PRICE
        assert serious_violations(page) == []  # the answer and its verdict shown
        page.screenshot(path=str(shots / "app-paid-call.png"), full_page=True)

        # verify the answer in the page, then a tampered copy
        page.click("#verify-button")
        page.wait_for_selector("#verify-status.ok, #verify-status.bad", timeout=60_000)
        assert (page.text_content("#verify-status") or "").startswith("valid")
        page.click("#tamper-button")
        page.wait_for_selector("#verify-status.bad", timeout=60_000)
        assert serious_violations(page) == []  # an invalid verdict reads as well as a valid one
        page.screenshot(path=str(shots / "app-paid-tampered.png"), full_page=True)

        # the history of the connected address shows the call
        job_id = result.split("job")[1].split("bundle CID")[0].strip()
        page.click("#history-button")
        page.wait_for_selector("#history-table:not([hidden])")
        assert job_id in (page.text_content("#history-table") or "")
        assert serious_violations(page) == []
        page.screenshot(path=str(shots / "app-history.png"), full_page=True)
        page.click("#history-table button")  # a past call's bundle (its access token) back into the verifier
        page.wait_for_selector("#verify-status:has-text('is loaded')")
        page.click("#verify-button")
        page.wait_for_selector("#verify-status.ok", timeout=60_000)
        browser.close()


def test_a_wallet_pays_for_an_attested_generation_from_the_prompt_box(node: Served, chain: Chain,
                                                                      tmp_path: Path) -> None:
    """An attested causal LM gets a prompt box and a max-tokens field instead of tensor fields; the x402 cap is the
    price per 1,000 tokens times max_tokens, and the answer says it is attested, not proven."""
    from proofmarket.systems.attested.tiny import build_tiny_lm
    from proofmarket.systems.workspace import Workspace

    sync_playwright, chromium = chromium_or_skip()
    ws: Workspace = node.app.state.services.workspace
    lm_id, _ = ws.compile_attested(build_tiny_lm(tmp_path / "tiny-llama"), name="tiny-llama", max_tokens_cap=64)
    node.app.state.services.catalog.register(lm_id, price_atomic=1_000_000)  # 1 USDC per 1,000 tokens
    payer = Account.from_key(keccak(b"proofmarket-webapp-lm-payer"))
    chain.usdc.mint(payer.address, 10 * PRICE, dev_account(0, chain.client.chain_id))
    wallet = DevWallet(payer, chain.rpc_url, chain.client.chain_id)
    before = chain.usdc.balance_of(payer.address)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = with_axe(browser.new_page(viewport={"width": 1024, "height": 900}))
        page.set_default_timeout(90_000)  # a loaded CI machine
        wallet.install(page)
        page.goto(f"{node.url}/app/#model/{lm_id}")  # not connected first: paying asks the wallet to connect
        page.wait_for_selector("#prompt-fields:not([hidden])")
        assert page.is_hidden("#call-json") and page.locator("#call-fields input").count() == 0
        page.fill("#call-prompt", "the proof shows")
        page.fill("#call-max-tokens", "8")
        assert page.input_value("#call-max") == "0.008"  # ceil(1,000,000 x 8 / 1,000) = 8,000 millionths
        page.click("#call-button")
        page.wait_for_selector("#call-status.ok, #call-status.bad", timeout=180_000)
        status = page.text_content("#call-status") or ""
        assert "attested" in status, status
        result = page.text_content("#call-result") or ""
        assert "no proof: an attestation" in result and "0.008 USDC from" in result  # 8,000 millionths
        streamed = page.locator("#call-answer .streamed")  # the text came as Server-Sent Events, token by token
        assert int(streamed.get_attribute("data-tokens") or 0) == 8 and streamed.inner_text()
        assert payer.address.lower() in (page.text_content("#wallet-status") or "").lower()
        assert serious_violations(page) == []  # the streamed text and its attestation
        page.screenshot(path=str(ROOT / "tests" / "screenshots" / "app-generate.png"), full_page=True)
        browser.close()
    assert before - chain.usdc.balance_of(payer.address) == 8000


class _Receiver:
    """A webhook target on this machine (a devnet node may POST to private addresses): the events it got."""

    def __init__(self) -> None:
        got: list[str] = []
        self.events = got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("content-length") or 0))
                got.append(self.headers.get("X-Proofmarket-Event") or "")
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pay_one_call(node: Served, chain: Chain, mlp_id: str) -> str:
    """A call paid over x402 by a wallet of its own: the settlement's transaction hash."""
    payer = funded_wallet(chain, "webapp-owner-revenue-payer", 2 * PRICE)
    url = f"{node.url}/v1/models/{mlp_id}/infer"
    terms = httpx.post(url, json=mlp_input(), timeout=60)
    assert terms.status_code == 402, terms.text
    payment = signed_payload(payer, requirements_of(terms.headers["PAYMENT-REQUIRED"]))
    paid = httpx.post(url, json=mlp_input(), headers={"PAYMENT-SIGNATURE": payment}, timeout=600)
    assert paid.status_code == 200, paid.text
    return str(decode_payment_response_header(paid.headers["PAYMENT-RESPONSE"]).transaction)


@pytest.fixture
def owner_node(node_home: Path, mlp_id: str, chain: Chain, payee: LocalAccount, tmp_path: Path) -> Iterator[Served]:
    """A node of its own (its book holds this test's call only) that POSTs webhooks to this machine."""
    app = create_app(node_settings(node_home, tmp_path / "node.db", chain.rpc_url, chain.deployment_file,
                                   webhook_private_targets="on"))
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
    with Served(app) as served:
        yield served


def test_an_owner_reads_its_revenue_transactions_free_tier_and_webhooks_in_the_page(
        owner_node: Served, chain: Chain, mlp_id: str, payee: LocalAccount) -> None:
    """The model's owner, signed in with its wallet at 375 px: subscribes a webhook, then (after a call paid over
    x402) reads its revenue by rail and by day (a chart), the call's capture with its transaction, the webhook's
    deliveries; sets a free tier and reads what it gave away; unsubscribes and ends the free tier."""
    sync_playwright, chromium = chromium_or_skip()
    shots = ROOT / "tests" / "screenshots"
    shots.mkdir(exist_ok=True)
    node, receiver = owner_node, _Receiver()
    wallet = DevWallet(payee, chain.rpc_url, chain.client.chain_id)
    try:
        with sync_playwright() as pw:
            browser, page = connected_page(pw, chromium, wallet, f"{node.url}/app/#owner", axe=True)
            page.click("#listings-button")
            page.wait_for_selector("#listings-status.ok")
            assert page.locator(f"#webhook-model option[value='{mlp_id}']").count() == 1

            # a webhook for the owner's models' calls and payouts, to a URL on this machine
            page.fill("#webhook-url", receiver.url)
            page.uncheck("input[name='webhook-event'][value='challenge']")
            page.click("#webhook-button")
            page.wait_for_selector("#webhook-status.ok, #webhook-status.bad")
            assert "subscribed" in (page.text_content("#webhook-status") or ""), page.text_content("#webhook-status")
            assert page.input_value("#webhook-secret").startswith("whsec_")
            assert receiver.url in (page.text_content("#webhooks-table") or "")

            tx = _pay_one_call(node, chain, mlp_id)

            # revenue: by rail, by day (a chart), the capture with its transaction
            page.click("#earnings-button")
            page.wait_for_selector("#earnings-status.ok, #earnings-status.bad")
            assert "earnings of" in (page.text_content("#earnings-status") or ""), page.text_content("#earnings-status")
            assert "x402" in (page.text_content("#revenue-rail-table") or "")
            titles = "els => els.map((e) => e.title.toLowerCase())"
            shown = page.eval_on_selector_all("#transactions-table code", titles)
            assert shown.count(tx.lower()) == 1  # the transaction short, the whole hash on hover
            assert "a call paid (x402)" in (page.text_content("#transactions-table") or "")
            chart = page.text_content("#revenue-chart figcaption") or ""
            assert chart.startswith("revenue per day: 0.03 USDC over 30 days"), chart
            assert page.locator("#revenue-chart svg rect").count() == 30

            # the webhook's deliveries, as the receiver got them
            def delivered() -> bool:
                page.evaluate("document.getElementById('webhook-status').className = ''")
                page.click("#webhooks-button")
                page.wait_for_selector("#webhook-status.ok, #webhook-status.bad")
                return "payout" in receiver.events and "delivered" in (page.text_content("#deliveries-table") or "")

            _until(delivered)
            assert "payout" in (page.text_content("#deliveries-table") or "")

            # a free tier of 2 calls a day (everyone together 5): what it gave away is on the earnings
            page.select_option("#free-model", mlp_id)
            page.fill("#free-calls", "2")
            page.fill("#free-total", "5")
            page.click("#free-button")
            page.wait_for_selector("#free-status.ok, #free-status.bad")
            said = page.text_content("#free-status") or ""
            assert "2 free call(s) a day" in said, said
            page.evaluate("document.getElementById('earnings-status').className = ''")
            page.click("#earnings-button")
            page.wait_for_selector("#earnings-status.ok")
            assert "2 / 5" in (page.text_content("#free-tier-table") or "")
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            assert serious_violations(page) == []  # the dashboard filled: tables, chart, forms, webhooks
            page.screenshot(path=str(shots / "app-owner-revenue-375.png"), full_page=True)
            page.set_viewport_size({"width": 1440, "height": 900})
            assert page.evaluate("document.documentElement.scrollWidth") <= 1440
            assert serious_violations(page) == []
            page.screenshot(path=str(shots / "app-owner-revenue-1440.png"), full_page=True)

            # unsubscribed, and the free tier ended: the shared node is as it was
            page.click("#webhooks-table button")
            page.wait_for_selector("#webhooks-table", state="hidden")
            page.fill("#free-calls", "0")
            page.fill("#free-total", "")
            page.evaluate("document.getElementById('free-status').className = ''")
            page.click("#free-button")
            page.wait_for_selector("#free-status.ok")
            assert "ended" in (page.text_content("#free-status") or "")
            browser.close()
    finally:
        receiver.close()


def _until(done: Callable[[], bool], timeout_s: float = 90.0) -> None:
    """Poll in Python (the page's CSP forbids the string evaluation of wait_for_function)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the page did not get there"
        time.sleep(0.5)
