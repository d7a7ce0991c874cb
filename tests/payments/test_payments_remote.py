"""The production path: the gate talks to a facilitator over HTTP (the SDK's HTTPFacilitatorClientSync).

The facilitator here is a tiny FastAPI service wrapping the SDK's in-process facilitator, reached through
Starlette's TestClient (an ``httpx.Client``), so the wire format is the real one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from payments_helpers import PRICE, Market, header, signed_payload
from x402 import x402FacilitatorSync
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.core.errors import FacilitatorUnavailable, PaymentError
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.facilitators import local_facilitator

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]


def facilitator_service(facilitator: x402FacilitatorSync) -> FastAPI:
    app = FastAPI()

    def parse(body: dict[str, Any]) -> tuple[PaymentPayload, PaymentRequirements]:
        payload = PaymentPayload.model_validate(body["paymentPayload"])
        return payload, PaymentRequirements.model_validate(body["paymentRequirements"])

    @app.get("/supported")
    def supported() -> dict[str, Any]:
        return facilitator.get_supported().model_dump(mode="json", by_alias=True, exclude_none=True)

    @app.post("/verify")
    def verify(body: dict[str, Any]) -> dict[str, Any]:
        return facilitator.verify(*parse(body)).model_dump(mode="json", by_alias=True, exclude_none=True)

    @app.post("/settle")
    def settle(body: dict[str, Any]) -> dict[str, Any]:
        return facilitator.settle(*parse(body)).model_dump(mode="json", by_alias=True, exclude_none=True)

    return app


@pytest.fixture
def remote_gate(market: Market) -> Iterator[PaymentGate]:
    service = facilitator_service(local_facilitator(market.facilitator, market.devnet.rpc_url, market.network))
    with TestClient(service, base_url="http://facilitator") as http:
        facilitator = HTTPFacilitatorClientSync(FacilitatorConfig(url="http://facilitator", http_client=http))
        yield PaymentGate(facilitator, network=market.network, asset=market.usdc.address, chain=market.client)


def test_a_payment_verifies_and_settles_through_an_http_facilitator(market: Market, remote_gate: PaymentGate) -> None:
    requirements = remote_gate.requirements(PRICE, market.payee.address)
    payment = header(signed_payload(market.payer, requirements))
    payee0 = market.usdc.balance_of(market.payee.address)

    settlement = remote_gate.settle(remote_gate.verify(payment, requirements))

    assert settlement.payer == market.payer.address and settlement.amount == PRICE
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE
    with pytest.raises(PaymentError) as replay:
        remote_gate.verify(payment, requirements)
    assert replay.value.code == "payment_replayed"


def test_a_refusal_through_an_http_facilitator_keeps_its_code(market: Market, remote_gate: PaymentGate) -> None:
    requirements = remote_gate.requirements(PRICE, market.payee.address)
    forged = header(signed_payload(market.payer, requirements, signer=market.other))

    with pytest.raises(PaymentError) as refusal:
        remote_gate.verify(forged, requirements)

    assert refusal.value.code == "payment_signature_invalid"


def test_an_unreachable_facilitator_url_is_a_503(market: Market) -> None:
    gate = PaymentGate.remote(facilitator_url="http://127.0.0.1:9", network=market.network, asset=market.usdc.address)
    try:
        with pytest.raises(FacilitatorUnavailable) as outage:
            gate.requirements(PRICE, market.payee.address)
    finally:
        gate.close()

    assert outage.value.http_status == 503 and "/supported" in outage.value.message
