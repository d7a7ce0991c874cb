"""An owner's whole story in the page at 375 px, with a wallet and no admin token: list a model (EIP-712 signed
listing request), watch it compile, register it on the registry from the wallet (its verifier deployed, then the
registry call the node prepares), find it in the catalogue by tag, call it, see the call in its analytics
(numbers and uPlot charts), and list a new version of it from its row in the owner's listings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_wallet import DevWallet, chromium_or_skip, connected_page, fill_request, serious_violations
from escrow_helpers import AppFactory, EscrowEnv, mlp_input, serve
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from proofmarket.chain import model_id_for
from proofmarket.samples import sample_path

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "screenshots"


@pytest.fixture
def served(make_app: AppFactory) -> Iterator[str]:
    yield from serve(make_app(listing_policy="open"))


def _status(page: object, selector: str, timeout: int = 600_000) -> str:
    page.wait_for_selector(f"{selector}.ok, {selector}.bad", timeout=timeout)  # type: ignore[attr-defined]
    return page.text_content(selector) or ""  # type: ignore[attr-defined]


def _until(done: Callable[[], bool], timeout_s: float = 90.0, shown: Callable[[], object] | None = None) -> None:
    """Poll in Python (the page's CSP forbids the string evaluation of wait_for_function)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"the page did not get there: {shown() if shown else ''}"
        time.sleep(0.2)


def _reset(page: object, selector: str) -> None:
    page.evaluate(f"document.querySelector('{selector}').className = ''")  # type: ignore[attr-defined]


def test_an_owner_lists_registers_finds_calls_and_charts_a_model_from_a_phone(env: EscrowEnv, served: str) -> None:
    sync_playwright, chromium = chromium_or_skip()
    SHOTS.mkdir(exist_ok=True)
    owner: LocalAccount = Account.from_key(keccak(b"proofmarket-webapp-owner"))
    env.market.client.rpc("anvil_setBalance", [owner.address, hex(10**20)])
    wallet = DevWallet(owner, env.rpc_url, env.market.client.chain_id)
    with sync_playwright() as pw:
        browser, page = connected_page(pw, chromium, wallet, f"{served}/app/#owner", axe=True)
        logs: list[str] = []
        page.on("console", lambda m: logs.append(m.text))
        page.on("pageerror", lambda e: logs.append(f"PAGEERROR {e}"))

        # the listing form offers every task of the catalogue (copied from the catalogue's filter: one list)
        from proofmarket.marketplace.entries import TASKS

        offered = page.eval_on_selector_all("#upload-task option", "options => options.map(o => o.value)")
        assert offered == ["", *TASKS], offered
        # list: signed by the wallet, no token; the compile is followed to its end
        page.set_input_files("#upload-onnx", str(sample_path("mlp")))
        page.set_input_files("#upload-samples", str(sample_path("mlp", "samples")))
        page.fill("#upload-name", "owner-iris")
        page.fill("#upload-price", "0.02")  # USDC: 20,000 atomic units
        page.fill("#upload-description", "Iris species from flower measurements")
        page.select_option("#upload-task", "classification")
        page.fill("#upload-tags", "tabular, iris-owner")
        page.fill("#upload-license", "MIT")
        page.click("#upload-button")
        status = _status(page, "#upload-status")
        assert status.startswith("compiled in") and "is served" in status, status
        assert "eth_signTypedData_v4" in wallet.signed
        model_id = status.split("model ")[1].split(" ")[0]

        # the owner's listings, and the registration from the wallet (verifier, then registry)
        _status(page, "#listings-status")
        page.click("text=Register owner-iris")
        _reset(page, "#listings-status")
        registered = _status(page, "#listings-status", timeout=180_000)
        assert "is listed on chain" in registered, registered
        assert len(wallet.sent) == 2
        entry = env.market.registry.get_model(model_id_for(owner.address, model_id))
        assert entry.spec.price == 20_000 and entry.owner.lower() == owner.address.lower()

        # found in the catalogue by a free-text search (on the node) and by its tag; called; its analytics show it
        page.goto(f"{served}/app/#catalog")
        page.fill("#filter", "flower measurements")  # words of its description: the node's search
        _until(lambda: page.locator("#models tbody tr").count() == 1)
        assert page.locator(f"#models a[href='#model/{model_id}']").count() == 1
        page.fill("#filter", "")
        # the cleared search answered first (every listing: the owner's and the two the node serves): else the tag's
        # one row below is the text search's still shown, and a search answered after it redraws the table under
        # the click (the link clicked is gone, the page stays on the catalogue)
        _until(lambda: page.locator("#models tbody tr").count() == 3)
        page.fill("#tag-filter", "iris-owner")
        page.dispatch_event("#tag-filter", "change")
        _until(lambda: page.locator("#models tbody tr").count() == 1)  # the tag's one listing
        assert page.locator(f"#models a[href='#model/{model_id}']").count() == 1
        page.click(f"#models a[href='#model/{model_id}']")
        # the model's page is built (its form too) once its title names it: fill the input after that, not before
        _until(lambda: page.text_content("#model-title") == "owner-iris",
               shown=lambda: (page.text_content("#model-title"), page.url, logs[-10:]))
        fill_request(page, mlp_input())
        page.click("#call-button")
        _status(page, "#call-status", timeout=300_000)
        def stats_show_the_call() -> bool:
            """The model's page read again until its stats count the call (recorded once it is final: on a loaded
            machine its settlement may land after the answer)."""
            if (page.text_content("#stats-status") or "").startswith("1 call"):
                return True
            page.evaluate("location.hash = ''")
            page.evaluate(f"location.hash = 'model/{model_id}'")
            time.sleep(1.0)
            return (page.text_content("#stats-status") or "").startswith("1 call")

        _until(stats_show_the_call, shown=lambda: (page.text_content("#stats-status"),
                                                    page.text_content("#call-status")))
        assert page.locator("#chart-calls canvas").count() == 1 and page.locator("#chart-revenue canvas").count() == 1
        assert "classification" in (page.text_content("#model-details") or "")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert serious_violations(page) == []  # the card with its charts, after the owner's listing
        page.screenshot(path=str(SHOTS / "app-owner-375.png"), full_page=True)
        assert width <= 375, f"the page is {width} px wide at 375 px"

        # a new version from the owner's listings: the form carries the listing's terms over, the owner picks the
        # new files; the new version's card names the one it replaces
        page.goto(f"{served}/app/#owner")
        page.click("#listings-button")
        _status(page, "#listings-status")
        page.click("text=New version of owner-iris")
        assert page.input_value("#upload-supersedes") == model_id
        assert (page.input_value("#upload-name"), page.input_value("#upload-price")) == ("owner-iris", "0.02")
        assert page.input_value("#upload-license") == "MIT" and page.input_value("#upload-task") == "classification"
        page.set_input_files("#upload-onnx", str(sample_path("logreg")))
        page.set_input_files("#upload-samples", str(sample_path("logreg", "samples")))
        _reset(page, "#upload-status")
        page.click("#upload-button")
        status = _status(page, "#upload-status")
        assert status.startswith("compiled in") and "is served" in status, status
        version = status.split("model ")[1].split(" ")[0]
        assert version != model_id
        page.goto(f"{served}/app/#model/{version}")
        page.wait_for_selector("#model-versions-block:not([hidden])")
        assert page.locator(f"#model-versions a[href='#model/{model_id}']").count() == 1
        browser.close()
