"""The web app in headless Chromium (Playwright driving Debian's chromium; no browser download) against a paid node
on the devnet, with an injected EIP-1193 provider backed by a devnet key: connect, pay for a call through the x402
client library (eth_signTypedData_v4), see the output, verify the answer in the page (valid), tamper (not valid),
find the call in the history (personal_sign); a wrong-shaped input, a rejected signature and a wallet on the wrong
chain are refused with a message and cost nothing. Screenshots go to tests/screenshots."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from x402_helpers import PRICE, Chain, Served, mlp_input

from proofmarket.chain import dev_account

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROVIDER = """
window.__wallet = { chainId: '0x7a69', reject: false };
window.ethereum = {
  isProofmarketTest: true,
  async request({ method, params }) {
    if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [window.__address];
    if (method === 'eth_chainId') return window.__wallet.chainId;
    if (window.__wallet.reject) { const e = new Error('User rejected the request.'); e.code = 4001; throw e; }
    if (method === 'eth_signTypedData_v4') return await window.pmSignTyped(params[1]);
    if (method === 'personal_sign') return await window.pmPersonalSign(params[0]);
    throw new Error('unsupported method ' + method);
  },
};
"""


def _typed_values(typed: dict[str, Any]) -> dict[str, Any]:
    """JSON strings back to ints for the integer fields (the page serialises bigints as strings)."""
    def fix(type_name: str, value: dict[str, Any]) -> dict[str, Any]:
        out = dict(value)
        for field in typed["types"].get(type_name, []):
            if field["type"].startswith(("uint", "int")) and isinstance(out.get(field["name"]), str):
                out[field["name"]] = int(out[field["name"]], 0)
        return out

    return {**typed, "domain": fix("EIP712Domain", typed["domain"]), "message": fix(typed["primaryType"],
                                                                                    typed["message"])}


def _payer() -> LocalAccount:
    account: LocalAccount = Account.from_key(keccak(b"proofmarket-webapp-payer"))
    return account


def test_a_wallet_pays_verifies_in_the_page_and_finds_its_history(node: Served, chain: Chain, mlp_id: str,
                                                                 tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    if chromium is None or sync_playwright is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Chromium (Debian package) and playwright (pip) for the browser tests")
        pytest.skip("no Chromium or playwright here")
    payer = _payer()
    chain.usdc.mint(payer.address, 10 * PRICE, dev_account(0, chain.client.chain_id))
    shots = ROOT / "tests" / "screenshots"
    shots.mkdir(exist_ok=True)

    def balance() -> int:
        return chain.usdc.balance_of(payer.address)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1024, "height": 900})
        page.expose_function("pmSignTyped", lambda doc: "0x" + bytes(Account.sign_typed_data(
            payer.key, full_message=_typed_values(json.loads(doc))).signature).hex())
        page.expose_function("pmPersonalSign", lambda msg: "0x" + bytes(payer.sign_message(
            encode_defunct(text=msg if not msg.startswith("0x") else bytes.fromhex(msg[2:]).decode())).signature).hex())
        page.add_init_script(PROVIDER.replace("window.__address", f"'{payer.address}'"))
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
        page.evaluate("window.__wallet.reject = true")
        page.fill("#call-json", json.dumps(mlp_input()))
        page.evaluate("document.getElementById('call-status').className = ''")
        page.click("#call-button")
        page.wait_for_selector("#call-status.bad")
        assert "rejected" in (page.text_content("#call-status") or "") and balance() == before
        page.evaluate("window.__wallet.reject = false")

        # a wallet on another chain: refused in the page, nothing paid
        page.evaluate("window.__wallet.chainId = '0x1'")
        page.click("#connect-button")
        page.wait_for_selector("#wallet-status.bad")
        page.evaluate("document.getElementById('call-status').className = ''")
        page.click("#call-button")
        page.wait_for_selector("#call-status.bad")
        assert "chain 1" in (page.text_content("#call-status") or "") and balance() == before
        page.evaluate("window.__wallet.chainId = '0x7a69'")
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
        browser.close()
