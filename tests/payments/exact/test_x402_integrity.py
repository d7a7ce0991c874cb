"""Issue 8 (payments): nobody charged without a result, no result without a settled payment, payments bound
to their resource and payer. Real node, real anvil, real proofs of the sample MLP."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from fastapi.testclient import TestClient
from x402_helpers import PAY, PRICE, Chain, Served, mlp_input, node_settings, requirements_of, signed_payload

from proofmarket.api import create_app
from proofmarket.chain import dev_account, sign_cancel_authorization
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.chain.devnet import automine_off
from proofmarket.core.errors import UsageError
from proofmarket.sdk.pay import nonce_of, payment_signature_header

pytestmark = [pytest.mark.slow, pytest.mark.chain]
FACILITATOR_WAIT_S = "1"


def infer_url(base: str, model_id: str) -> str:
    return f"{base}/v1/models/{model_id}/infer"


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def pay(base: str, client: Any, chain: Chain, model_id: str, account: LocalAccount) -> str:
    required = client.post(infer_url(base, model_id), json=mlp_input()).headers["PAYMENT-REQUIRED"]
    return payment_signature_header(account, required, PRICE, assets=[(chain.network, chain.usdc.address)])


def owner(accepted: dict[str, Any]) -> dict[str, str]:
    """The headers that read a job as its payer: its access token, when the node hands one out."""
    token = accepted.get("access_token")
    return {"X-Job-Token": token} if token else {}


def get_job(client: Any, base: str, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    job: dict[str, Any] = client.get(f"{base}/v1/jobs/{job_id}", headers=headers).json()
    return job


def wait_final(client: Any, base: str, job_id: str, headers: dict[str, str],
               timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = get_job(client, base, job_id, headers)
        if job["status"] in ("settled", "failed"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.1)



def slow_settling_node(node_home: Path, db: Path, chain: Chain, mlp_id: str, payee: LocalAccount,
                       monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """A node whose facilitator waits 1 s for a settlement receipt and follows pending ones every 0.2 s."""
    monkeypatch.setenv("PROOFMARKET_FACILITATOR_WAIT_S", FACILITATOR_WAIT_S)
    app = create_app(node_settings(node_home, db, chain.rpc_url, chain.deployment_file, settle_poll_s=0.2))
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
    return app


# --- charged, no result: pending means settling ------------------------------------------------------
def test_a_settlement_still_pending_keeps_the_hold_and_settles_when_mined(
        node_home: Path, mlp_id: str, chain: Chain, payer: LocalAccount, payee: LocalAccount, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = slow_settling_node(node_home, tmp_path / "node.db", chain, mlp_id, payee, monkeypatch)
    before = chain.balances(payer.address, payee.address)
    with TestClient(app) as client:
        payment = pay("", client, chain, mlp_id, payer)
        with automine_off(chain.client):
            response = client.post(infer_url("", mlp_id), json=mlp_input(), headers={PAY: payment})
            assert response.status_code == 202, response.text  # not payment_settlement_failed
            job_id, headers = response.json()["id"], owner(response.json())
            job = get_job(client, "", job_id, headers)
            assert job["status"] == "settling" and job["result"] is None and job["links"]["proof"] is None
            assert [p.payer for p in app.state.services.payments.gate.ledger.pending()] == [payer.address]
            time.sleep(0.5)
            assert get_job(client, "", job_id, headers)["status"] == "settling"  # followed, still pending
            chain.client.rpc("evm_mine", [])

        job = wait_final(client, "", job_id, headers)
    assert job["status"] == "settled", job
    receipt_tx = job["result"]["payment"]["transaction"]
    assert job["result"]["receipt"]["typedData"]["message"]["transaction"] == receipt_tx
    assert chain.balances(payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]


def test_a_restarted_node_resumes_a_settling_job(
        node_home: Path, mlp_id: str, chain: Chain, payer: LocalAccount, payee: LocalAccount, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "node.db"
    before = chain.balances(payer.address, payee.address)
    with automine_off(chain.client):
        with TestClient(slow_settling_node(node_home, db, chain, mlp_id, payee, monkeypatch)) as client:
            payment = pay("", client, chain, mlp_id, payer)
            response = client.post(infer_url("", mlp_id), json=mlp_input(), headers={PAY: payment})
            job_id, headers = response.json()["id"], owner(response.json())
            assert get_job(client, "", job_id, headers)["status"] == "settling"
        chain.client.rpc("evm_mine", [])  # mined while the node is down

    with TestClient(slow_settling_node(node_home, db, chain, mlp_id, payee, monkeypatch)) as client:
        job = wait_final(client, "", job_id, headers)
    assert job["status"] == "settled" and job["result"]["receipt"] is not None
    assert chain.balances(payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]


# --- unpaid work ---------------------------------------------------------------------------------------
def test_concurrent_payments_beyond_the_balance_are_refused_before_proving(node: Served, chain: Chain,
                                                                           mlp_id: str, payee: LocalAccount) -> None:
    poor: LocalAccount = Account.create()
    chain.usdc.transfer(poor.address, PRICE, dev_account(7, DEVNET_CHAIN_ID))  # enough for one call
    payments = [pay(node.url, httpx, chain, mlp_id, poor) for _ in range(4)]
    payee0 = chain.usdc.balance_of(payee.address)
    jobs = node.app.state.services.calls.repo
    count0 = sum(jobs.counts().values())

    def call(payment: str) -> httpx.Response:
        return httpx.post(infer_url(node.url, mlp_id), json=mlp_input(), headers={PAY: payment}, timeout=180)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(call, payments))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 402, 402, 402], [r.text for r in responses]
    refused = [r for r in responses if r.status_code == 402]
    assert {error_code(r) for r in refused} == {"payment_insufficient_funds"}
    assert all(requirements_of(r.headers["PAYMENT-REQUIRED"]).amount == str(PRICE) for r in refused)
    assert sum(jobs.counts().values()) == count0 + 1  # the refused ones never became jobs: nothing proved
    assert chain.usdc.balance_of(poor.address) == 0 and chain.usdc.balance_of(payee.address) == payee0 + PRICE


def test_a_payment_checked_before_its_payers_other_call_settled_is_refused_before_proving(
        node: Served, chain: Chain, mlp_id: str) -> None:
    """The race behind the concurrent test, made deterministic: the second payment is verified (its transfer
    simulated on the balance of then) while the first call is still to come; the first call then proves and
    settles, so nothing of the payer is held any more; the second call's cover must read the balance of now and
    refuse it, never trust the old simulation and prove a call that cannot settle."""
    from proofmarket.api.routers.infer import _offer
    from proofmarket.core.errors import PaymentInsufficientFunds

    poor: LocalAccount = Account.create()
    chain.usdc.transfer(poor.address, PRICE, dev_account(7, DEVNET_CHAIN_ID))  # enough for one call
    first, second = (pay(node.url, httpx, chain, mlp_id, poor) for _ in range(2))
    services = node.app.state.services
    offer, system = _offer(services, mlp_id, mlp_input(), node.url)
    rail = services.rails.select({PAY: second})
    ticket = rail.verify({PAY: second}, offer)  # the balance covers it now
    assert ticket is not None
    try:
        done = httpx.post(infer_url(node.url, mlp_id), json=mlp_input(), headers={PAY: first}, timeout=180)
        assert done.status_code == 200, done.text  # settled: the payer's balance is spent, nothing held
        calls = sum(services.calls.repo.counts().values())
        with pytest.raises(PaymentInsufficientFunds):
            services.calls.submit_prove(mlp_id, mlp_input(), ticket=ticket, cover=rail.cover, system=system,
                                       rail=rail.name)
        assert sum(services.calls.repo.counts().values()) == calls  # never stored, never proved
    finally:
        rail.release(ticket)


def test_the_terms_ask_for_a_window_that_covers_queue_and_proof(node: Served, chain: Chain, mlp_id: str,
                                                                payer: LocalAccount) -> None:
    first = httpx.post(infer_url(node.url, mlp_id), json=mlp_input())
    terms = requirements_of(first.headers["PAYMENT-REQUIRED"])
    minimum = first.json()["error"]["details"]["min_validity_seconds"]
    assert terms.max_timeout_seconds > minimum >= 60

    short = signed_payload(payer, terms, valid_before=int(time.time()) + minimum // 2)
    response = httpx.post(infer_url(node.url, mlp_id), json=mlp_input(), headers={PAY: short})
    assert response.status_code == 402 and error_code(response) == "payment_window_too_short"
    assert f"at least {minimum} s" in response.json()["error"]["message"]
    assert requirements_of(response.headers["PAYMENT-REQUIRED"]).max_timeout_seconds == terms.max_timeout_seconds


def test_an_authorization_canceled_while_proving_releases_no_result(node: Served, chain: Chain, mlp_id: str,
                                                                    payer: LocalAccount, payee: LocalAccount,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    runner = node.app.state.services.queue.runner
    proving, go = threading.Event(), threading.Event()
    real = runner._execute

    def held(job: Any, systems: Any, events: Any) -> Any:  # the proof waits until the payer has canceled
        proving.set()
        go.wait(60)
        return real(job, systems, events)

    monkeypatch.setattr(runner, "_execute", held)
    payment = pay(node.url, httpx, chain, mlp_id, payer)
    before = chain.balances(payer.address, payee.address)
    fresh = {"input_data": [[0.123, 0.456, 0.789, 0.1, 0.2, 0.3, 0.4, 0.5]]}  # never proved before: no cache hit
    response = httpx.post(f"{infer_url(node.url, mlp_id)}?mode=async", json=fresh, headers={PAY: payment})
    assert response.status_code == 202, response.text
    assert proving.wait(60)

    nonce = bytes.fromhex(nonce_of(payment)[2:])
    cancel = sign_cancel_authorization(payer, chain.usdc.domain(), nonce)
    fn = chain.usdc.contract.functions.cancelAuthorization(payer.address, nonce, cancel.v, cancel.r, cancel.s)
    chain.client.transact(fn, dev_account(7, DEVNET_CHAIN_ID))
    go.set()

    job = wait_final(httpx, node.url, response.json()["id"], owner(response.json()))
    assert job["status"] == "failed" and job["error"]["code"] == "payment_settlement_failed"
    assert job["result"] is None and job["links"]["proof"] is None
    assert chain.balances(payer.address, payee.address) == before


# --- low: resource, idempotency, Host ---------------------------------------------------------------
def test_a_payment_made_for_another_model_is_refused(node: Served, chain: Chain, mlp_id: str,
                                                     payer: LocalAccount, payee: LocalAccount) -> None:
    payment = pay(node.url, httpx, chain, mlp_id, payer)
    doc = json.loads(base64.b64decode(payment))
    doc["resource"]["url"] = infer_url(node.url, "bafkreiothermodelothermodelothermodelothermodelothermodel")
    for_b = base64.b64encode(json.dumps(doc).encode()).decode()  # same price, same payTo: made for model B
    before = chain.balances(payer.address, payee.address)

    response = httpx.post(infer_url(node.url, mlp_id), json=mlp_input(), headers={PAY: for_b}, timeout=120)

    assert response.status_code == 402 and error_code(response) == "payment_mismatch", response.text
    assert response.json()["error"]["details"]["fields"] == ["resource"]
    assert chain.balances(payer.address, payee.address) == before


def test_an_idempotency_key_never_returns_a_paid_result_to_another_caller(
        node: Served, chain: Chain, mlp_id: str, payer: LocalAccount, sdk_payer: LocalAccount) -> None:
    key = {"Idempotency-Key": f"integrity-{time.time_ns()}"}
    url = infer_url(node.url, mlp_id)
    paid = httpx.post(url, json=mlp_input(), timeout=180, headers={**key, PAY: pay(node.url, httpx, chain, mlp_id,
                                                                                    payer)})
    assert paid.status_code == 200, paid.text

    unpaid = httpx.post(url, json=mlp_input(), headers=key, timeout=60)
    assert unpaid.status_code == 402 and error_code(unpaid) == "payment_required" and "output" not in unpaid.text

    other = httpx.post(url, json=mlp_input(), timeout=180,
                       headers={**key, PAY: pay(node.url, httpx, chain, mlp_id, sdk_payer)})
    assert other.status_code == 200 and other.json()["job_id"] != paid.json()["job_id"]
    assert other.json()["payment"]["payer"] == sdk_payer.address

    again = httpx.post(url, json=mlp_input(), timeout=60,  # the payer's own retry still gets its job
                       headers={**key, PAY: pay(node.url, httpx, chain, mlp_id, payer)})
    assert again.status_code == 200 and again.json()["job_id"] == paid.json()["job_id"]


def test_off_loopback_the_resource_url_never_comes_from_the_host_header(
        node_home: Path, mlp_id: str, chain: Chain, payee: LocalAccount, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="PROOFMARKET_PUBLIC_URL"):
        create_app(node_settings(node_home, tmp_path / "a.db", chain.rpc_url, chain.deployment_file,
                                 api_host="0.0.0.0"))

    public = "https://node.example.org"
    app = create_app(node_settings(node_home, tmp_path / "b.db", chain.rpc_url, chain.deployment_file,
                                   api_host="0.0.0.0", public_url=public))
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
    with TestClient(app) as client:
        response = client.post(infer_url("", mlp_id), json=mlp_input(), headers={"Host": "evil.example"})
    from x402.http import decode_payment_required_header

    required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
    assert required.resource is not None and required.resource.url == infer_url(public, mlp_id)  # type: ignore[union-attr]
