"""One book for the money, through a paid node on the devnet:
- credits and pass calls on a third party's model pay that owner: after ``POST /v1/payouts/run`` the owner's USDC
  balance grew by exactly what its model sold on those rails, ``/v1/earnings`` (signed by the owner) says so, and
  the ledger check finds no difference with the chain;
- a purchase whose settlement is still pending when the facilitator stops waiting is answered 202 with a purchase
  to poll, and credited once mined (before: 402 ``payment_settlement_pending``, never credited);
- a purchase whose authorization expires unmined is voided: nothing charged, nothing credited.
Cached proofs (one input): the money is what runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account.signers.local import LocalAccount
from paid_node import ADMIN, serve_node
from x402 import x402ClientSync
from x402.http.clients import x402_requests
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402_helpers import PAY, Chain, Served, funded_wallet, mlp_input, requirements_of, signed_payload

from proofmarket.chain.devnet import advance_time, automine_off
from proofmarket.core.address_signature import body_purpose, sign_headers

PRICE = 4_000


def fresh(chain: Chain, tag: str, usdc: int = 1_000 * PRICE) -> LocalAccount:
    return funded_wallet(chain, f"money-book-{tag}", usdc)


@pytest.fixture(scope="module")
def owner(chain: Chain) -> LocalAccount:
    return fresh(chain, "third-party-owner", usdc=0)  # owns the model, holds nothing: every unit it gets was paid


@pytest.fixture(scope="module")
def node(home: Path, chain: Chain, mlp_id: str, owner: LocalAccount,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROOFMARKET_FACILITATOR_WAIT_S", "1")
        env.setenv("PROOFMARKET_PAYMENT_MIN_VALIDITY_S", "5")
        served = serve_node(home, tmp_path_factory.mktemp("money-db") / "node.db", chain, mlp_id, PRICE,
                            settler_interval_s=0.3)
        served.app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=owner.address)
        with served:
            yield served


def signer_of(node: Served) -> str:
    return str(requests.get(f"{node.url}/.well-known/ai-service.json", timeout=30).json()["address_signature"]["node"])


def x402_session(chain: Chain, wallet: LocalAccount) -> requests.Session:
    client = x402ClientSync()
    register_exact_evm_client(client, EthAccountSigner(wallet), networks=chain.network)
    client.set_spend_controls({"allowed_assets": [{"network": chain.network, "asset": chain.usdc.address}]})
    return x402_requests(client)


def key_of(node: Served, wallet: LocalAccount) -> str:
    body: dict[str, Any] = {}
    made = requests.post(f"{node.url}/v1/keys", json=body, timeout=30,
                         headers=sign_headers(wallet, signer_of(node), body_purpose(body)))
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def keyed_call(node: Served, mlp_id: str, key: str) -> dict[str, Any]:
    answer = requests.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120,
                           headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["payment"])


def admin(node: Served, method: str, path: str, **kw: Any) -> dict[str, Any]:
    answer = requests.request(method, f"{node.url}{path}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120,
                              **kw)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_credits_and_pass_calls_on_a_third_partys_model_pay_its_owner(node: Served, chain: Chain, mlp_id: str,
                                                                     owner: LocalAccount) -> None:
    buyer = fresh(chain, "buyer")
    session = x402_session(chain, buyer)
    bought = session.post(f"{node.url}/v1/credits/buy", params={"amount": 3 * PRICE}, timeout=120)
    assert bought.status_code == 200, bought.text
    assert bought.json()["credited"] == str(3 * PRICE) and bought.json()["purchase"]["status"] == "credited"
    key = key_of(node, buyer)
    drawn = [keyed_call(node, mlp_id, key) for _ in range(2)]
    assert [p["source"] for p in drawn] == ["credits", "credits"]

    passed = session.post(f"{node.url}/v1/passes/buy", timeout=120,
                          params={"calls_per_day": 2, "days": 1, "model_id": mlp_id})
    assert passed.status_code == 200, passed.text
    assert passed.json().get("paid") == str(2 * PRICE), passed.json()
    assert [keyed_call(node, mlp_id, key)["source"] for _ in range(2)] == ["pass", "pass"]

    before = chain.balances(owner.address)[0]
    ran = admin(node, "POST", "/v1/payouts/run")
    assert ran["ran"] and owner.address.lower() in ran["payouts"]["paid"], ran
    sold = 2 * PRICE + 2 * PRICE  # two credit draws and two pass calls at the pass's price per call
    assert chain.balances(owner.address)[0] - before == sold  # the owner was paid on chain

    earnings = requests.get(f"{node.url}/v1/earnings", params={"address": owner.address}, timeout=30,
                            headers=sign_headers(owner, signer_of(node), "earnings")).json()
    book = earnings["book"]
    assert (book["owed"], book["in_flight"]) == ("0", "0")
    assert int(book["paid"]) >= sold and book["models"][mlp_id]["paid"] == book["paid"]
    assert any(t["kind"] == "payout" and t["transaction"] == ran["payouts"]["paid"][owner.address.lower()]
               for t in book["transactions"])
    unsigned = requests.get(f"{node.url}/v1/earnings", params={"address": owner.address}, timeout=30)
    assert unsigned.status_code == 404  # no market here, and the book is the owner's to read
    stranger = requests.get(f"{node.url}/v1/earnings", params={"address": owner.address}, timeout=30,
                            headers=sign_headers(buyer, signer_of(node), "earnings"))
    assert stranger.status_code == 401

    again = admin(node, "POST", "/v1/payouts/run")
    assert again["payouts"]["paid"] == {}  # paid once
    check = admin(node, "GET", "/v1/ledger/check")
    assert check["ok"], check["differences"]
    assert check["transfers_checked"] >= 3  # the purchases and the payout, each found in its transaction


def test_a_purchase_still_pending_is_credited_once_mined(node: Served, chain: Chain) -> None:
    buyer = fresh(chain, "late-buyer")
    url = f"{node.url}/v1/credits/buy?amount={5 * PRICE}"
    pay = signed_payload(buyer, requirements_of(requests.post(url, timeout=30).headers["PAYMENT-REQUIRED"]))
    before = chain.balances(buyer.address)[0]
    with automine_off(chain.client):
        answer = requests.post(url, headers={PAY: pay}, timeout=120)
        assert answer.status_code == 202, answer.text  # not 402 payment_settlement_pending
        purchase = answer.json()["purchase"]
        assert purchase["status"] == "pending" and answer.headers["Location"] == purchase["poll"]
        assert requests.get(f"{node.url}{purchase['poll']}", timeout=30).json()["status"] == "pending"
        chain.client.rpc("evm_mine", [])
    done = poll(node, purchase["poll"])  # the settler follows it on chain
    assert done["status"] == "credited" and done["transaction"] and "balance" not in done  # the poll is public
    mine = requests.get(f"{node.url}/v1/credits", timeout=30, headers=sign_headers(buyer, signer_of(node), "credits"))
    assert mine.json()["balance"] == str(5 * PRICE)
    assert before - chain.balances(buyer.address)[0] == 5 * PRICE  # charged once, credited once


def test_a_purchase_that_expires_unmined_is_voided_and_charges_nothing(node: Served, chain: Chain) -> None:
    buyer = fresh(chain, "expired-buyer")
    url = f"{node.url}/v1/credits/buy?amount={PRICE}"
    soon = chain.client.timestamp() + 8
    pay = signed_payload(buyer, requirements_of(requests.post(url, timeout=30).headers["PAYMENT-REQUIRED"]),
                         valid_before=soon)
    before = chain.balances(buyer.address)[0]
    with automine_off(chain.client):
        answer = requests.post(url, headers={PAY: pay}, timeout=120)
        assert answer.status_code == 202, answer.text
        advance_time(chain.client, 30)  # mined late, the transfer reverts: the authorization stays unused
    done = poll(node, answer.json()["purchase"]["poll"])
    assert done["status"] == "voided", done
    assert chain.balances(buyer.address)[0] == before
    keys = requests.get(f"{node.url}/v1/credits", timeout=30,
                        headers=sign_headers(buyer, signer_of(node), "credits")).json()
    assert keys["balance"] == "0"


def poll(node: Served, path: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        view: dict[str, Any] = requests.get(f"{node.url}{path}", timeout=30).json()
        if view["status"] != "pending":
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.2)


def test_the_cli_runs_payouts_checks_the_ledger_and_shows_the_owners_book(node: Served, owner: LocalAccount,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from proofmarket.cli.main import app

    runner = CliRunner()
    monkeypatch.delenv("PROOFMARKET_ADMIN_TOKEN", raising=False)
    refused = runner.invoke(app, ["ledger", "check", "--node", node.url])
    assert refused.exit_code == 2 and "PROOFMARKET_ADMIN_TOKEN" in refused.output
    monkeypatch.setenv("PROOFMARKET_ADMIN_TOKEN", ADMIN)
    paid = runner.invoke(app, ["payouts", "run", "--node", node.url])
    assert paid.exit_code == 0 and "payees paid" in paid.output, paid.output
    checked = runner.invoke(app, ["ledger", "check", "--node", node.url, "--json"])
    assert checked.exit_code == 0, checked.output
    monkeypatch.setenv("OWNER_UNDER_TEST", owner.key.hex())
    shown = runner.invoke(app, ["earnings", "--node", node.url, "--key-env", "OWNER_UNDER_TEST"])
    assert shown.exit_code == 0 and owner.address.lower() in shown.output and "every rail" in shown.output, \
        shown.output


def test_a_refund_not_mined_in_time_stays_held_and_is_confirmed_once_mined(node: Served, chain: Chain) -> None:
    """A credits refund whose transfer is sent but not mined in time: the credits stay held (no call and no second
    refund spends them), and the settler captures it once the chain has it; the ledger check then finds the
    transfer back on chain."""
    buyer = fresh(chain, "refunds-late")
    bought = x402_session(chain, buyer).post(f"{node.url}/v1/credits/buy", params={"amount": 2 * PRICE}, timeout=120)
    assert bought.status_code == 200, bought.text
    rail = next(r for r in node.app.state.services.rails.all() if r.name == "credits")  # type: ignore[attr-defined]
    client = rail.chain.client
    before, timeout = chain.balances(buyer.address)[0], client.receipt_timeout
    client.receipt_timeout = 1.0
    try:
        with automine_off(chain.client):
            late = requests.post(f"{node.url}/v1/credits/refund", timeout=60,
                                 headers=sign_headers(buyer, signer_of(node), "credits-refund"))
            assert late.status_code == 503 and late.json()["error"]["code"] == "transaction_not_mined", late.text
            held = requests.get(f"{node.url}/v1/credits", timeout=30,
                                headers=sign_headers(buyer, signer_of(node), "credits")).json()
            assert held["balance"] == "0"  # held by the refund on its way: nothing left to spend
            again = requests.post(f"{node.url}/v1/credits/refund", timeout=60,
                                  headers=sign_headers(buyer, signer_of(node), "credits-refund"))
            assert again.status_code == 400  # no second refund of the same credits
            chain.client.rpc("evm_mine", [])
    finally:
        client.receipt_timeout = timeout
    ran = admin(node, "POST", "/v1/payouts/run")
    assert any(ref.startswith("credits:refund:") for ref in ran["payouts"]["confirmed"]), ran
    assert chain.balances(buyer.address)[0] - before == 2 * PRICE  # refunded once
    check = admin(node, "GET", "/v1/ledger/check")
    assert check["ok"], check["differences"]
