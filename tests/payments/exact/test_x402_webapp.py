"""The web app in headless Chromium (Playwright driving Debian's chromium; no browser download) against a paid node
on the devnet, with an injected EIP-1193 provider backed by a devnet key: connect, pay for a call through the x402
client library (eth_signTypedData_v4), see the output, verify the answer in the page (valid), tamper (not valid),
find the call in the history (personal_sign); a wrong-shaped input, a rejected signature and a wallet on the wrong
chain are refused with a message and cost nothing. Screenshots go to tests/screenshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser_wallet import DevWallet, chromium_or_skip
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from x402_helpers import PRICE, Chain, Served, mlp_input

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
        page = browser.new_page(viewport={"width": 1024, "height": 900})
        page.set_default_timeout(90_000)  # a loaded CI machine
        wallet.install(page)
        page.goto(f"{node.url}/app/#model/{mlp_id}")
        page.click("#connect-button")
        page.wait_for_selector("#wallet-status.ok")
        assert payer.address.lower() in (page.text_content("#wallet-status") or "").lower()
        page.wait_for_selector("#model:not([hidden])")

        # a wrong-shaped input: refused by the node before any payment
        before = balance()
        page.fill("#call-json", json.dumps({"input_data": [[1.0, 2.0]]}))
        page.click("#call-button")
        page.wait_for_selector("#call-status.bad")
        assert "input_shape" in (page.text_content("#call-status") or "") and balance() == before

        # a rejected signature: nothing paid
        wallet.reject = True
        page.fill("#call-json", json.dumps(mlp_input()))
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
        page.click("#connect-button")
        page.wait_for_selector("#wallet-status.ok")

        # pay and run: output, proof size, timings, receipt; charged the price once
        page.evaluate("document.getElementById('call-status').className = ''")
        page.click("#call-button")
        page.wait_for_selector("#call-status.ok, #call-status.bad", timeout=180_000)
        assert "ok" in (page.get_attribute("#call-status", "class") or ""), page.text_content("#call-status")
        result = page.text_content("#call-result") or ""
        assert "proof size" in result and "atomic USDC from" in result and "signed by" in result
        assert before - balance() == PRICE
        page.screenshot(path=str(shots / "app-paid-call.png"), full_page=True)

        # verify the answer in the page, then a tampered copy
        page.click("#verify-button")
        page.wait_for_selector("#verify-status.ok, #verify-status.bad", timeout=60_000)
        assert (page.text_content("#verify-status") or "").startswith("valid")
        page.click("#tamper-button")
        page.wait_for_selector("#verify-status.bad", timeout=60_000)
        page.screenshot(path=str(shots / "app-paid-tampered.png"), full_page=True)

        # the history of the connected address shows the call
        job_id = result.split("job")[1].split("bundle CID")[0].strip()
        page.click("#history-button")
        page.wait_for_selector("#history-table:not([hidden])")
        assert job_id in (page.text_content("#history-table") or "")
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
        page = browser.new_page(viewport={"width": 1024, "height": 900})
        page.set_default_timeout(90_000)  # a loaded CI machine
        wallet.install(page)
        page.goto(f"{node.url}/app/#model/{lm_id}")  # not connected first: paying asks the wallet to connect
        page.wait_for_selector("#prompt-fields:not([hidden])")
        assert page.is_hidden("#call-json") and page.locator("#call-fields input").count() == 0
        page.fill("#call-prompt", "the proof shows")
        page.fill("#call-max-tokens", "8")
        assert page.input_value("#call-max") == "8000"  # ceil(1,000,000 x 8 / 1,000)
        page.click("#call-button")
        page.wait_for_selector("#call-status.ok, #call-status.bad", timeout=180_000)
        status = page.text_content("#call-status") or ""
        assert "attested" in status, status
        result = page.text_content("#call-result") or ""
        assert "no proof: an attestation" in result and "8000 atomic USDC from" in result
        streamed = page.locator("#call-answer .streamed")  # the text came as Server-Sent Events, token by token
        assert int(streamed.get_attribute("data-tokens") or 0) == 8 and streamed.inner_text()
        assert payer.address.lower() in (page.text_content("#wallet-status") or "").lower()
        page.screenshot(path=str(ROOT / "tests" / "screenshots" / "app-generate.png"), full_page=True)
        browser.close()
    assert before - chain.usdc.balance_of(payer.address) == 8000
