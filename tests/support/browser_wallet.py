"""Browser tests of /app: Debian's Chromium driven by Playwright (no browser download), and an EIP-1193 wallet
injected into the page, backed by a devnet key held here.

The wallet signs typed data (eth_signTypedData_v4) and personal messages, signs and sends transactions
(eth_sendTransaction, nonce and gas filled here, as a wallet does), and forwards every read to the chain's RPC
(eth_call, receipts, blocks): the page's own requests stay on the node's origin. ``wallet.reject = True`` makes
it refuse like a person pressing "reject" (EIP-1193 code 4001); ``wallet.chain_id`` can be set to another chain.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

PROVIDER = """
window.ethereum = {
  isProofmarketTest: true,
  async request({ method, params }) {
    const answer = JSON.parse(await window.pmWallet(method, JSON.stringify(params || [])));
    if (answer.error) {
      const e = new Error(answer.error.message);
      e.code = answer.error.code;
      if (answer.error.data !== undefined) e.data = answer.error.data;
      throw e;
    }
    return answer.result;
  },
};
"""
SIGNING = {"eth_signTypedData_v4", "personal_sign", "eth_sendTransaction", "eth_requestAccounts"}
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_RUN = ("axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations"
           ".map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) })))")


def with_axe(page: Any) -> Any:
    """axe-core in every document ``page`` opens from now on, injected by the browser's debugging protocol (as the
    wallet is): the page's CSP stays on. Returns the page."""
    if not AXE.is_file():
        pytest.fail("axe-core is one of the npm tools (make setup)")
    page.add_init_script(path=str(AXE))
    return page


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations in the page as it stands (axe loaded: ``connected_page(axe=True)``
    or a script tag where the context bypasses the CSP)."""
    return [v for v in page.evaluate(AXE_RUN) if v["impact"] in ("serious", "critical")]


def chromium_or_skip() -> tuple[Any, str]:
    """Playwright's sync API and Debian's Chromium; skipped locally without them, a failure in CI."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    if chromium is None or sync_playwright is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Chromium (Debian package) and playwright (pip) for the browser tests")
        pytest.skip("no Chromium or playwright here")
    return sync_playwright, chromium


def typed_values(typed: dict[str, Any]) -> dict[str, Any]:
    """JSON strings back to ints for the integer fields (pages serialise bigints as strings)."""
    def fix(type_name: str, value: dict[str, Any]) -> dict[str, Any]:
        out = dict(value)
        for field in typed["types"].get(type_name, []):
            if field["type"].startswith(("uint", "int")) and isinstance(out.get(field["name"]), str):
                out[field["name"]] = int(out[field["name"]], 0)
        return out

    return {**typed, "domain": fix("EIP712Domain", typed["domain"]),
            "message": fix(typed["primaryType"], typed["message"])}


class DevWallet:
    def __init__(self, account: LocalAccount, rpc_url: str, chain_id: int = 31337) -> None:
        self.account = account
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.reject = False
        self.sent: list[str] = []  # transaction hashes, in order
        self.signed: list[str] = []  # methods signed, in order

    def install(self, page: Any) -> None:
        page.expose_function("pmWallet", self._handle)
        page.add_init_script(PROVIDER)

    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        body = httpx.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                          timeout=60).json()
        return {k: body[k] for k in ("result", "error") if k in body}

    def _handle(self, method: str, params_json: str) -> str:
        params = json.loads(params_json)
        try:
            answer = self._answer(method, params)
        except Exception as exc:  # a wallet error, as a JSON-RPC error
            answer = {"error": {"code": -32603, "message": str(exc)}}
        return json.dumps(answer)

    def _answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method in ("eth_requestAccounts", "eth_accounts"):
            return {"result": [self.account.address]}
        if method == "eth_chainId":
            return {"result": hex(self.chain_id)}
        if method in SIGNING and self.reject:
            return {"error": {"code": 4001, "message": "User rejected the request."}}
        if method == "eth_signTypedData_v4":
            self.signed.append(method)
            signed = Account.sign_typed_data(self.account.key, full_message=typed_values(json.loads(params[1])))
            return {"result": "0x" + bytes(signed.signature).hex()}
        if method == "personal_sign":
            self.signed.append(method)
            msg = params[0]
            text = bytes.fromhex(msg[2:]).decode() if msg.startswith("0x") else msg
            return {"result": "0x" + bytes(self.account.sign_message(encode_defunct(text=text)).signature).hex()}
        if method == "eth_sendTransaction":
            return self._send(params[0])
        return self._rpc(method, params)

    def _send(self, tx: dict[str, Any]) -> dict[str, Any]:
        call = {"from": self.account.address, "data": tx.get("data", "0x"), "value": tx.get("value", "0x0")}
        if tx.get("to"):  # none: a contract creation
            call["to"] = tx["to"]
        estimate = self._rpc("eth_estimateGas", [call])
        if "error" in estimate:  # the wallet shows the revert before anything is signed
            return estimate
        nonce = int(self._rpc("eth_getTransactionCount", [self.account.address, "pending"])["result"], 16)
        fee = int(self._rpc("eth_gasPrice", [])["result"], 16)
        fields = {"data": call["data"], "value": int(call["value"], 16), "nonce": nonce,
                  "gas": int(int(estimate["result"], 16) * 1.3) + 21_000, "maxFeePerGas": 2 * fee + 1,
                  "maxPriorityFeePerGas": 1, "chainId": self.chain_id, "type": 2}
        if "to" in call:
            fields["to"] = call["to"]
        signed = self.account.sign_transaction(fields)
        answer = self._rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        if "result" in answer:
            self.sent.append(answer["result"])
        return answer


def connected_page(pw: Any, chromium: str, wallet: DevWallet, url: str, width: int = 375,
                   height: int = 800, *, axe: bool = False) -> tuple[Any, Any]:
    """Headless Chromium at ``url`` (``width`` x ``height``) with ``wallet`` injected and connected (the wallet's
    status line ok): (browser, page). ``axe``: axe-core in the page too (injected like the wallet, by the browser's
    debugging protocol: the page's CSP stays on)."""
    browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(90_000)  # a loaded CI machine
    wallet.install(page)
    if axe:
        with_axe(page)
    page.goto(url)
    connect(page)
    return browser, page


def connect(page: Any, timeout_s: float = 90.0) -> None:
    """Press the page's connect button and wait for the wallet's status line to say connected; a failure names what
    the line said instead (a refusal, the wrong chain, or nothing: the click was not handled)."""
    page.click("#connect-button")
    deadline = time.monotonic() + timeout_s
    while "ok" not in (page.get_attribute("#wallet-status", "class") or "").split():
        status = page.text_content("#wallet-status") or ""
        assert time.monotonic() < deadline, (f"the wallet did not connect in {timeout_s:.0f} s: {status!r}; "
                                             f"{_manifest_probe(page.url)}")
        page.wait_for_timeout(100)


def _manifest_probe(url: str) -> str:
    """What the node's manifest answers now, and how fast (for a connect that never finished)."""
    base = url.split("/app/")[0]
    start = time.monotonic()
    try:
        answer = httpx.get(f"{base}/.well-known/ai-service.json", timeout=30)
        return f"the manifest answered {answer.status_code} in {time.monotonic() - start:.1f} s"
    except httpx.HTTPError as exc:
        return f"the manifest did not answer in {time.monotonic() - start:.1f} s ({exc!r})"


def fill_request(page: Any, doc: object) -> None:
    """Type a call's input as JSON in the model page's developer box (opened first: it is folded under the fields)."""
    import json

    page.evaluate("document.getElementById('call-json-box').open = true")
    page.fill("#call-json", json.dumps(doc))
