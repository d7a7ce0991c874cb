"""The web app's whole story in headless Chromium (Debian's, driven by Playwright) with an injected devnet
wallet: pick a model in the catalog, pay a call over x402, verify the answer in the page and on chain (a flipped
byte fails both); escrow a request from the page (the input commitment computed in the page: a public input with
approve, a hashed input with an EIP-3009 signature) and follow it to its fulfilment, read back on chain; verify
that answer in the page and on chain through the wallet (an eth_call to the verifier the registry names), a
flipped byte refused on chain; find the call and the requests in the history and refund one whose deadline
passed; an owner's earnings; a prover's stake. A rejected signature, a wallet on another chain and a price above
the person's maximum escrow nothing. Screenshots go to tests/screenshots."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from browser_wallet import DevWallet, chromium_or_skip, connect, fill_request, serious_violations, with_axe
from escrow_helpers import PRICE_UNITS, AppFactory, EscrowEnv, mlp_input, other_input, serve
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from proofmarket.chain import dev_account

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "screenshots"


@pytest.fixture
def served(make_app: AppFactory) -> Iterator[str]:
    """A node on the market's chain that also sells calls over x402 (paid to each model's revenue splitter)."""
    yield from serve(make_app(payments="on"))


def _funded(env: EscrowEnv, seed: bytes) -> LocalAccount:
    account: LocalAccount = Account.from_key(keccak(seed))
    env.market.client.rpc("anvil_setBalance", [account.address, hex(10**20)])
    env.market.usdc.mint(account.address, 20 * PRICE_UNITS, dev_account(0, env.market.client.chain_id))
    return account


def _status(page: object, selector: str, timeout: int = 240_000) -> str:
    page.wait_for_selector(f"{selector}.ok, {selector}.bad", timeout=timeout)  # type: ignore[attr-defined]
    return page.text_content(selector) or ""  # type: ignore[attr-defined]


def _reset(page: object, selector: str) -> None:
    page.evaluate(f"document.querySelector('{selector}').className = ''")  # type: ignore[attr-defined]


def test_a_wallet_escrows_from_the_page_verifies_on_chain_and_refunds(env: EscrowEnv, served: str) -> None:
    sync_playwright, chromium = chromium_or_skip()
    SHOTS.mkdir(exist_ok=True)
    consumer = _funded(env, b"proofmarket-webapp-escrow-consumer")
    wallet = DevWallet(consumer, env.rpc_url, env.market.client.chain_id)
    usdc = env.market.usdc
    outside: list[str] = []
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = with_axe(b.new_page(viewport={"width": 1024, "height": 900}))
        page.set_default_timeout(90_000)  # a loaded CI machine
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(served) else None)
        wallet.install(page)
        page.goto(f"{served}/app/")
        page.click(f"#models a[href='#model/{env.public}']")  # pick a model in the catalog
        page.wait_for_selector("#escrow:not([hidden])")
        connect(page)

        # pay for a call over x402, see the answer, verify it in the page and on chain; a flipped byte fails both
        before = usdc.balance_of(consumer.address)
        fill_request(page, other_input())
        page.click("#call-button")
        assert "proof bundle is loaded" in _status(page, "#call-status")
        assert before - usdc.balance_of(consumer.address) == PRICE_UNITS
        paid = page.text_content("#call-result") or ""
        shown = f"{Decimal(PRICE_UNITS) / 10**6:f}".rstrip("0").rstrip(".")  # the price in USDC
        assert f"{shown} USDC from" in paid and "atomic" not in paid
        job_id = page.evaluate("[...document.querySelectorAll('#call-result dt')].find((d) => d.textContent === 'job')"
                               ".nextElementSibling.textContent")
        page.click("#verify-button")
        assert _status(page, "#verify-status").startswith("valid")
        page.click("#tamper-button")
        page.wait_for_selector("#verify-status.bad")
        page.click("#chain-verify-button")
        assert _status(page, "#chain-status").startswith("valid on chain")
        _reset(page, "#chain-status")
        page.click("#chain-tamper-button")
        assert "NOT valid on chain" in _status(page, "#chain-status")
        page.screenshot(path=str(SHOTS / "app-paid-verified-on-chain.png"), full_page=True)
        fill_request(page, mlp_input())

        # a rejected approval, then a wallet on another chain: nothing escrowed
        before = usdc.balance_of(consumer.address)
        wallet.reject = True
        page.click("#escrow-button")
        assert "rejected" in _status(page, "#escrow-status") and usdc.balance_of(consumer.address) == before
        wallet.reject = False
        wallet.chain_id = 1
        page.click("#connect-button")
        page.wait_for_selector("#wallet-status.bad")
        _reset(page, "#escrow-status")
        page.click("#escrow-button")
        assert "chain 1" in _status(page, "#escrow-status") and usdc.balance_of(consumer.address) == before
        wallet.chain_id = env.market.client.chain_id
        connect(page)

        # a registry price above the person's maximum: refused before any transaction
        page.fill("#call-max", str(Decimal(PRICE_UNITS - 1) / 10**6))  # the field takes USDC
        _reset(page, "#escrow-status")
        page.click("#escrow-button")
        assert "above your maximum" in _status(page, "#escrow-status") and wallet.sent == []
        page.fill("#call-max", str(Decimal(PRICE_UNITS) / 10**6))

        # approve + request, the input handed to the node, fulfilled: the chain's record read back
        _reset(page, "#escrow-status")
        page.click("#escrow-button")
        status = _status(page, "#escrow-status")
        assert "fulfilled on chain" in status, status
        result = page.text_content("#escrow-result") or ""
        assert "matches the chain's record" in result
        request_id = int(result.split("request")[1].split("escrowed")[0].strip())
        assert env.market.market.get_request(request_id).status.name == "FULFILLED"
        assert before - usdc.balance_of(consumer.address) == PRICE_UNITS
        assert serious_violations(page) == []
        page.screenshot(path=str(SHOTS / "app-escrow-fulfilled.png"), full_page=True)

        # the answer verified in the page, then on chain through the wallet; a flipped byte refused on chain
        page.click("#verify-button")
        assert _status(page, "#verify-status", 60_000).startswith("valid")
        page.click("#chain-verify-button")
        chain_status = _status(page, "#chain-status", 60_000)
        assert chain_status.startswith("valid on chain"), chain_status
        _reset(page, "#chain-status")
        page.click("#chain-tamper-button")
        assert "NOT valid on chain" in _status(page, "#chain-status", 60_000)
        assert serious_violations(page) == []
        page.screenshot(path=str(SHOTS / "app-verified-on-chain.png"), full_page=True)

        # a hashed-input model, paid with one EIP-3009 signature: the page's salted Poseidon commitment opens
        page.goto(f"{served}/app/#model/{env.hashed}")
        page.wait_for_selector("#escrow:not([hidden])")
        connect(page)
        fill_request(page, other_input())
        page.select_option("#escrow-payment", "eip3009")
        sent = len(wallet.sent)
        page.click("#escrow-button")
        status = _status(page, "#escrow-status")
        assert "fulfilled on chain" in status, status
        assert len(wallet.sent) == sent + 1 and "eth_signTypedData_v4" in wallet.signed  # one transaction
        assert "salt" in (page.text_content("#escrow-result") or "")

        # a request nobody answers: past its deadline, History offers the refund and the wallet takes it back
        unanswered = env.market.with_accounts(consumer=consumer).request(env.public, other_input(), ttl_s=60)
        env.market.client.rpc("evm_increaseTime", [120])
        env.market.client.rpc("evm_mine", [])
        held = usdc.balance_of(consumer.address)
        hide = f"{served}/v1/requests?consumer=*"  # a node that lists none of them: the chain's events still do
        page.route(hide, lambda route: route.fulfill(json={"items": [], "next_offset": None}))
        page.click("#history-button")
        page.wait_for_selector(f"#requests-table button:has-text('Refund {unanswered.request_id}')")
        table = page.text_content("#requests-table") or ""
        assert str(request_id) in table and "on chain: Fulfilled" in table and "not seen by this node" in table
        page.unroute(hide)
        _reset(page, "#history-status")
        page.click("#history-button")
        page.wait_for_selector(f"#requests-table button:has-text('Refund {unanswered.request_id}')")
        page.wait_for_selector("#history-status.ok")
        table = page.text_content("#requests-table") or ""
        assert str(request_id) in table and "fulfilled" in table
        assert job_id in (page.text_content("#history-table") or "")  # the paid call too
        assert serious_violations(page) == []
        page.screenshot(path=str(SHOTS / "app-history-requests.png"), full_page=True)
        _reset(page, "#history-status")
        page.click(f"#requests-table button:has-text('Refund {unanswered.request_id}')")
        assert "refunded" in _status(page, "#history-status")
        assert usdc.balance_of(consumer.address) - held == PRICE_UNITS
        assert env.market.market.get_request(unanswered.request_id).status.name == "REFUNDED"

        # a prover stakes through the page
        page.goto(f"{served}/app/#prover")
        connect(page)
        page.fill("#stake-amount", "7.5")
        page.click("#stake-button")
        assert "staked 7.5 USDC" in _status(page, "#stake-status")
        assert "7.5 USDC" in (page.text_content("#prover-mine") or "")
        assert env.market.market.get_prover(consumer.address).stake == 7_500_000
        assert serious_violations(page) == []
        page.screenshot(path=str(SHOTS / "app-prover.png"), full_page=True)

        # the owner's earnings: the escrow fulfilments credited its share; the page withdraws it
        owner_page = with_axe(b.new_page(viewport={"width": 1024, "height": 900}))
        owner_page.set_default_timeout(90_000)  # a loaded CI machine
        DevWallet(env.market.accounts.owner, env.rpc_url, env.market.client.chain_id).install(owner_page)
        owner_page.goto(f"{served}/app/#owner")
        connect(owner_page)
        owner_page.click("#earnings-button")
        assert "earnings of" in _status(owner_page, "#earnings-status")
        earned = owner_page.text_content("#earnings") or ""
        assert "earned on the market" in earned and "0 USDC" not in earned.split("earned on the market")[1][:30]
        assert "owed by this node" in earned and "paid to you" in earned  # the node's book, signed by the owner
        owner = env.market.accounts.owner.address
        owed, held = env.market.market.owed(owner), env.market.usdc.balance_of(owner)
        assert owed > 0 and "not withdrawn yet" in earned
        owner_page.click("#owed-withdraw-button")
        owner_page.wait_for_selector("#earnings-status.ok:has-text('withdrawn (tx')", timeout=240_000)
        assert env.market.market.owed(owner) == 0 and env.market.usdc.balance_of(owner) == held + owed
        assert serious_violations(owner_page) == []
        owner_page.screenshot(path=str(SHOTS / "app-owner.png"), full_page=True)
        b.close()
    assert outside == []  # every chain read and transaction went through the wallet


def test_the_page_commitment_is_the_sdk_commitment(env: EscrowEnv, served: str, tmp_path: Path) -> None:
    """scripts/commitment.mjs runs the page's commit.js in Node: the same commitment as the Python SDK, for a
    public input and for a salted, hashed one."""
    from proofmarket import models
    from proofmarket.systems.ezkl.commitment import input_commitment

    doc = tmp_path / "input.json"
    doc.write_text(json.dumps(mlp_input()))
    salt = [(7 * i + 3) % 256 for i in range(16)]
    for model_id, given in ((env.public, None), (env.hashed, salt)):
        args = ["node", str(ROOT / "scripts" / "commitment.mjs"), served, model_id, str(doc)]
        done = subprocess.run([*args, json.dumps(given)] if given else args, capture_output=True, text=True,
                              timeout=120)
        page = json.loads(done.stdout.strip().splitlines()[-1])
        manifest, info = env.ws.prover.model(model_id)
        sdk = input_commitment(env.ws.store, manifest, models.parse_inputs(mlp_input(), info), given)
        assert page["commitment"] == sdk.commitment and [int(x) for x in page["instances"]] == sdk.instances
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"input_data": [[1.0, 2.0]]}))
    done = subprocess.run(["node", str(ROOT / "scripts" / "commitment.mjs"), served, env.public, str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "input_shape" in json.loads(done.stdout.strip().splitlines()[-1])["error"]


def test_a_node_that_names_a_squatted_listing_gets_nothing_escrowed(env: EscrowEnv, served: str) -> None:
    """Someone lists the public model's CID under their own address with the manifest's hashes but another verifier
    (one that would accept other proofs); a node points the page at that listing. The page checks the entry against
    the manifest fetched by CID, and the verifier's code against the one compiled from it: refused, nothing sent."""
    from dataclasses import replace

    from proofmarket.chain import model_key

    sync_playwright, chromium = chromium_or_skip()
    squatter = _funded(env, b"proofmarket-webapp-squatter")
    honest = env.market.registry.get_model(env.market.onchain_id(env.public))
    other = env.market.registry.get_model(env.market.onchain_id(env.hashed)).spec.verifier
    env.market.registry.register(model_key(env.public), replace(honest.spec, verifier=other), squatter)
    squatted = "0x" + env.market.onchain_id(env.public, squatter.address).hex()
    consumer = _funded(env, b"proofmarket-webapp-squat-victim")
    wallet = DevWallet(consumer, env.rpc_url, env.market.client.chain_id)

    def lie(route: object) -> None:  # the node's model page names the squatter's listing
        response = route.fetch()  # type: ignore[attr-defined]
        doc = response.json()
        doc["registry"] = {**doc["registry"], "owner": squatter.address, "onchain_id": squatted, "verifier": other}
        route.fulfill(response=response, json=doc)  # type: ignore[attr-defined]

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = b.new_page()
        page.set_default_timeout(90_000)  # a loaded CI machine
        wallet.install(page)
        page.route(f"{served}/v1/models/{env.public}", lie)
        page.goto(f"{served}/app/#model/{env.public}")
        page.wait_for_selector("#escrow:not([hidden])")
        connect(page)
        fill_request(page, mlp_input())
        page.click("#escrow-button")
        status = _status(page, "#escrow-status")
        assert "not the one compiled from the model's manifest" in status, status
        b.close()
    assert wallet.sent == [] and wallet.signed == []
