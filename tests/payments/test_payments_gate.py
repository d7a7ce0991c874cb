"""x402 pay-per-call against a real anvil: a tiny FastAPI app that uses PaymentGate explicitly (402 with
PAYMENT-REQUIRED, verify, "infer", settle, PAYMENT-RESPONSE), paid by the x402 SDK client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from payments_helpers import PRICE, Market, edit_header, header, signed_payload
from x402 import x402Client
from x402.extensions.bazaar import validate_discovery_extension
from x402.http import decode_payment_required_header, decode_payment_response_header
from x402.http.clients import x402_httpx_transport
from x402.http.clients.httpx import PaymentError as X402ClientError
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentRequired as X402PaymentRequired

from proofmarket.core.errors import PaymentError, PaymentExpired, PaymentRequired
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.headers import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    Discovery,
)
from proofmarket.sdk.pay import paying_httpx_client, payment_signature_header

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]

T = TypeVar("T")
ROUTE = "/v1/models/m1/infer"
DISCOVERY = Discovery(
    input_example={"inputs": [1.0, 2.0]},
    input_schema={"properties": {"inputs": {"type": "array"}}, "required": ["inputs"]},
    output_example={"output": [3.0]},
    route_template="/v1/models/:model_id/infer",
)


# --- the app under test ---------------------------------------------------------------------------
def make_app(gate: PaymentGate, payee: str, price: int = PRICE) -> FastAPI:
    app = FastAPI()
    app.state.seen = []  # every PAYMENT-SIGNATURE received, for replay tests

    @app.post("/v1/models/{model_id}/infer")
    async def infer(model_id: str, request: Request) -> Response:
        url = str(request.url)
        requirements = gate.requirements(price, payee, url, "sum of the inputs")
        payment = request.headers.get(PAYMENT_SIGNATURE_HEADER)
        try:
            if payment is None:
                raise PaymentRequired("this call costs 0.25 USDC")
            app.state.seen.append(payment)
            verified = await gate.verify_async(payment, requirements)
        except PaymentError as exc:
            required = gate.payment_required_header(requirements, url, error=exc.code, discovery=DISCOVERY)
            return JSONResponse(exc.to_dict(), exc.http_status, headers={PAYMENT_REQUIRED_HEADER: required})
        output = [sum((await request.json())["inputs"])]  # the "inference"
        settlement = await gate.settle_async(verified)
        body = {"model": model_id, "output": output, "payment": settlement.to_json()}
        return JSONResponse(body, headers={PAYMENT_RESPONSE_HEADER: gate.payment_response_header(settlement)})

    return app


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def pay_and_call(app: FastAPI, market: Market, account: LocalAccount, max_amount: int = PRICE) -> httpx.Response:
    assets = [(market.network, market.usdc.address)]
    transport = httpx.ASGITransport(app)
    client = paying_httpx_client(account, max_amount, assets=assets, transport=transport, base_url="http://node")
    async with client as c:
        return await c.post(ROUTE, json={"inputs": [1.0, 2.0]})


async def call(app: FastAPI, payment: str | None = None) -> httpx.Response:
    headers = {PAYMENT_SIGNATURE_HEADER: payment} if payment is not None else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://node") as c:
        return await c.post(ROUTE, json={"inputs": [1.0, 2.0]}, headers=headers)


def balances(market: Market, *accounts: LocalAccount | str) -> list[int]:
    return [market.usdc.balance_of(a if isinstance(a, str) else a.address) for a in accounts]


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert decode_payment_required_header(response.headers[PAYMENT_REQUIRED_HEADER]).error == code


# --- 402 --------------------------------------------------------------------------------------------
def test_no_payment_gets_402_with_v2_requirements_and_bazaar_discovery(market: Market, gate: PaymentGate) -> None:
    response = run(call(make_app(gate, market.payee.address)))

    refused(response, 402, "payment_required")
    required = decode_payment_required_header(response.headers[PAYMENT_REQUIRED_HEADER])
    assert isinstance(required, X402PaymentRequired) and required.x402_version == 2
    assert required.resource is not None and required.resource.url == "http://node" + ROUTE
    (accept,) = required.accepts
    assert (accept.scheme, accept.network, accept.amount) == ("exact", market.network, str(PRICE))
    assert (accept.asset, accept.pay_to) == (market.usdc.address, market.payee.address)
    assert accept.extra == {"name": "USD Coin", "version": "2"} and accept.max_timeout_seconds == 900
    bazaar = (required.extensions or {})["bazaar"]
    assert validate_discovery_extension(bazaar).valid
    assert bazaar["info"]["input"]["method"] == "POST"
    assert bazaar["info"]["input"]["pathParams"] == {"model_id": "m1"}
    assert bazaar["routeTemplate"] == "/v1/models/:model_id/infer"


# --- paying -----------------------------------------------------------------------------------------
def test_paid_call_moves_exactly_the_price(market: Market, gate: PaymentGate) -> None:
    app = make_app(gate, market.payee.address)
    payee0, payer0 = balances(market, market.payee, market.payer)

    response = run(pay_and_call(app, market, market.payer))

    assert response.status_code == 200, response.text
    assert response.json()["output"] == [3.0]
    settled = decode_payment_response_header(response.headers[PAYMENT_RESPONSE_HEADER])
    assert settled.success and settled.network == market.network and settled.amount == str(PRICE)
    assert settled.payer == market.payer.address
    receipt = market.client.w3.eth.get_transaction_receipt(settled.transaction)  # type: ignore[arg-type]
    assert receipt["status"] == 1
    assert balances(market, market.payee, market.payer) == [payee0 + PRICE, payer0 - PRICE]


def test_a_client_written_against_the_sdk_alone_can_pay(market: Market, gate: PaymentGate) -> None:
    app = make_app(gate, market.payee.address)
    payee0 = market.usdc.balance_of(market.payee.address)

    async def sdk_only() -> httpx.Response:
        client = x402Client()
        register_exact_evm_client(client, EthAccountSigner(market.other))
        client.set_spend_controls({"allowed_assets": [{"network": market.network, "asset": market.usdc.address}]})
        transport = x402_httpx_transport(client, httpx.ASGITransport(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            return await http.post(ROUTE, json={"inputs": [1.0, 2.0]})

    response = run(sdk_only())

    assert response.status_code == 200, response.text
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE


def test_the_client_refuses_a_price_above_its_cap(market: Market, gate: PaymentGate) -> None:
    app = make_app(gate, market.payee.address)
    payer0 = market.usdc.balance_of(market.payer.address)

    with pytest.raises(X402ClientError, match="spend_controls|filtered out"):
        run(pay_and_call(app, market, market.payer, max_amount=PRICE - 1))
    assert market.usdc.balance_of(market.payer.address) == payer0


# --- refusals ---------------------------------------------------------------------------------------
def test_a_replayed_payment_is_refused_and_moves_nothing(market: Market, gate: PaymentGate) -> None:
    app = make_app(gate, market.payee.address)
    assert run(pay_and_call(app, market, market.payer)).status_code == 200
    used = app.state.seen[-1]
    after_first = balances(market, market.payee, market.payer)

    again = run(call(app, used))

    refused(again, 409, "payment_replayed")
    assert balances(market, market.payee, market.payer) == after_first


def test_a_replay_is_refused_by_a_restarted_node_from_the_chain_itself(market: Market) -> None:
    first = make_app(market.gate(), market.payee.address)
    assert run(pay_and_call(first, market, market.payer)).status_code == 200
    after_first = balances(market, market.payee, market.payer)

    restarted = make_app(market.gate(), market.payee.address)  # fresh, empty ledger
    again = run(call(restarted, first.state.seen[-1]))

    refused(again, 409, "payment_replayed")
    assert "on chain" in again.json()["message"]
    assert balances(market, market.payee, market.payer) == after_first


def test_one_payment_cannot_start_two_jobs(market: Market, gate: PaymentGate) -> None:
    requirements = gate.requirements(PRICE, market.payee.address)
    payment = header(signed_payload(market.payer, requirements))
    gate.verify(payment, requirements)  # job 1 starts; not settled yet

    with pytest.raises(PaymentError) as second:
        gate.verify(payment, requirements)

    assert second.value.code == "payment_replayed" and second.value.http_status == 409
    assert "already accepted by this node" in second.value.message


def test_a_wrong_amount_is_refused(market: Market, gate: PaymentGate) -> None:
    app = make_app(gate, market.payee.address)
    cheaper = gate.requirements(PRICE - 1, market.payee.address)
    required = gate.payment_required_header(cheaper, "http://node" + ROUTE)
    underpaid = payment_signature_header(market.payer, required, PRICE, assets=[(market.network, market.usdc.address)])
    before = balances(market, market.payee, market.payer)

    response = run(call(app, underpaid))

    refused(response, 402, "payment_amount_mismatch")
    assert response.json()["details"]["expected"] == str(PRICE)
    assert balances(market, market.payee, market.payer) == before


def test_an_authorization_below_the_accepted_amount_is_refused(market: Market, gate: PaymentGate) -> None:
    requirements = gate.requirements(PRICE, market.payee.address)
    # accepted.amount says PRICE, the signed authorization moves one unit less
    payment = header(signed_payload(market.payer, requirements, value=PRICE - 1))

    with pytest.raises(PaymentError) as refusal:
        gate.verify(payment, requirements)

    assert refusal.value.code == "payment_amount_mismatch"


def test_a_payment_to_another_payee_is_refused(market: Market, gate: PaymentGate) -> None:
    requirements = gate.requirements(PRICE, market.payee.address)
    payment = header(signed_payload(market.payer, requirements, to=market.other.address))

    with pytest.raises(PaymentError) as refusal:
        gate.verify(payment, requirements)

    assert refusal.value.code == "payment_mismatch"
    assert refusal.value.details["fields"] == ["authorization.to"]


def test_an_expired_authorization_is_refused(market: Market, gate: PaymentGate) -> None:
    app = make_app(gate, market.payee.address)
    requirements = gate.requirements(PRICE, market.payee.address)
    expired = header(signed_payload(market.payer, requirements, valid_before=int(time.time()) - 60))
    before = balances(market, market.payee, market.payer)

    response = run(call(app, expired))

    refused(response, 402, "payment_expired")
    assert balances(market, market.payee, market.payer) == before


def test_an_authorization_expiring_before_it_could_settle_is_refused(market: Market, gate: PaymentGate) -> None:
    requirements = gate.requirements(PRICE, market.payee.address)
    soon = header(signed_payload(market.payer, requirements, valid_before=int(time.time()) + 10))

    with pytest.raises(PaymentError) as refusal:
        gate.verify(soon, requirements)

    assert refusal.value.code == "payment_window_too_short" and isinstance(refusal.value, PaymentExpired)
    assert f"at least {gate.min_validity_seconds} s" in refusal.value.message
    assert refusal.value.details["max_timeout_seconds"] == int(requirements.max_timeout_seconds)


def test_a_not_yet_valid_authorization_is_refused(market: Market, gate: PaymentGate) -> None:
    requirements = gate.requirements(PRICE, market.payee.address)
    future = header(signed_payload(market.payer, requirements, valid_after=int(time.time()) + 3600))

    with pytest.raises(PaymentError) as refusal:
        gate.verify(future, requirements)

    assert refusal.value.code == "payment_not_yet_valid"


def test_a_forged_signature_is_refused(market: Market, gate: PaymentGate) -> None:
    app = make_app(gate, market.payee.address)
    requirements = gate.requirements(PRICE, market.payee.address)
    forged = header(signed_payload(market.payer, requirements, signer=market.other))  # from=payer, signed by other
    before = balances(market, market.payee, market.payer, market.other)

    response = run(call(app, forged))

    refused(response, 402, "payment_signature_invalid")
    assert balances(market, market.payee, market.payer, market.other) == before


def test_a_tampered_signature_is_refused(market: Market, gate: PaymentGate) -> None:
    requirements = gate.requirements(PRICE, market.payee.address)
    honest = header(signed_payload(market.payer, requirements))

    def flip(data: dict[str, Any]) -> None:
        sig = data["payload"]["signature"]
        data["payload"]["signature"] = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]

    with pytest.raises(PaymentError) as refusal:
        gate.verify(edit_header(honest, flip), requirements)

    assert refusal.value.code == "payment_signature_invalid"


def test_a_payer_without_funds_is_refused_with_a_specific_code(market: Market, gate: PaymentGate) -> None:
    requirements = gate.requirements(PRICE, market.payee.address)
    broke = header(signed_payload(Account.create(), requirements))

    with pytest.raises(PaymentError) as refusal:
        gate.verify(broke, requirements)

    assert refusal.value.code == "payment_insufficient_funds"


@pytest.mark.parametrize(
    ("payment", "code"),
    [
        ("not base64 at all!", "payment_malformed"),
        ("eyJ4NDAyVmVyc2lvbiI6IDJ9", "payment_malformed"),  # {"x402Version": 2}
        ("e30=", "payment_malformed"),  # {}
        ("", "payment_required"),
    ],
    ids=["garbage", "no-accepted", "empty-object", "empty-header"],
)
def test_a_malformed_header_is_refused(market: Market, gate: PaymentGate, payment: str, code: str) -> None:
    response = run(call(make_app(gate, market.payee.address), payment))

    refused(response, 402, code)
