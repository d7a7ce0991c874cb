"""The web app's channels, API keys and credits at 375 px in headless Chromium (Debian's, driven by Playwright) with a
devnet wallet: open a channel with one signature and a deposit sent from the wallet, see it listed, start a
withdrawal; make an API key (shown once) and revoke it; buy credits with one x402 payment and read the balance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_wallet import DevWallet, chromium_or_skip, connected_page, serious_violations
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from paid_node import serve_node
from x402_helpers import Chain, Served

from proofmarket.chain import dev_account

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
PRICE = 2_000


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_node(home, tmp_path_factory.mktemp("access-db") / "node.db", chain, mlp_id, PRICE) as served:
        yield served


def test_channels_keys_and_credits_from_the_page_at_375_px(node: Served, chain: Chain) -> None:
    sync_playwright, chromium = chromium_or_skip()
    payer: LocalAccount = Account.from_key(keccak(b"proofmarket-access-page"))
    chain.usdc.mint(payer.address, 10_000_000, dev_account(0, chain.client.chain_id))
    chain.client.rpc("anvil_setBalance", [payer.address, hex(10**18)])
    wallet = DevWallet(payer, chain.rpc_url, chain.client.chain_id)
    shots = ROOT / "tests" / "screenshots"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser, page = connected_page(pw, chromium, wallet, f"{node.url}/app/#access", axe=True)

        before = chain.usdc.balance_of(payer.address)
        page.fill("#channel-amount", "0.5")  # USDC: 500,000 atomic units
        page.click("#channel-button")
        page.wait_for_selector("#channel-status.ok")
        assert "deposited 0.5 USDC" in (page.text_content("#channel-status") or "")
        assert chain.usdc.balance_of(payer.address) == before - 500_000
        page.wait_for_selector("#channels-table:not([hidden])")
        assert "0.5" in (page.text_content("#channels-table") or "")
        page.evaluate("document.getElementById('channel-status').className = ''")
        page.click("#withdraw-button")
        page.wait_for_selector("#channel-status.ok")
        assert "withdrawal of 0.5 USDC started" in (page.text_content("#channel-status") or "")

        page.click("#key-button")
        page.wait_for_selector("#key-status.ok")
        secret = page.input_value("#key-secret")
        assert secret.startswith("pmk_")
        page.wait_for_selector("#keys-table:not([hidden])")
        page.click("#keys-table button")
        page.wait_for_selector("#keys-table >> text=revoked")

        page.fill("#buy-amount", "0.04")
        page.click("#buy-credits-button")
        page.wait_for_selector("#credits-details dd")
        assert "0.04" in (page.text_content("#credits-details") or "")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert serious_violations(page) == []  # channels, keys and credits filled in
        page.screenshot(path=str(shots / "access-375.png"), full_page=True)
        browser.close()
    assert width <= 375, f"the page is {width} px wide at 375"
