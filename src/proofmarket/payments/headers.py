"""x402 v2 headers: PAYMENT-REQUIRED (with bazaar discovery), PAYMENT-RESPONSE (with receipts).

Encoding goes through the SDK (``encode_payment_required_header``, ``encode_payment_response_header``)
so that what we send is exactly what SDK clients decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from x402.extensions.bazaar import OutputConfig, declare_discovery_extension
from x402.http import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    HTTPRequestContext,
    decode_payment_response_header,
    encode_payment_required_header,
    encode_payment_response_header,
)
from x402.schemas import SettleResponse

from proofmarket.payments.types import PaidOnChain
from proofmarket.systems.receipts import offer_receipt_extension

__all__ = [
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "Discovery",
    "decode_payment_response_header",
    "encode_payment_required_header",
    "encode_payment_response_header",
    "payment_response_header",
    "payment_response_headers",
    "settle_response",
    "with_receipt",
]

OFFER_RECEIPT = "offer-receipt"
PROOFMARKET_RECEIPT = "proofmarket-receipt"


@dataclass(frozen=True)
class Discovery:
    """What the x402 bazaar extension tells a catalogue about the paid route.

    ``route_template`` uses ``:param`` segments (``/v1/models/:model_id/infer``); the concrete values
    are read from the resource URL.
    """

    method: str = "POST"
    input_example: dict[str, Any] | None = None
    input_schema: dict[str, Any] | None = None
    output_example: Any = None
    output_schema: dict[str, Any] | None = None
    body_type: str | None = "json"
    route_template: str | None = None
    path_params_schema: dict[str, Any] | None = field(default=None)
    verifiable: dict[str, Any] | None = None  # what the answer guarantees: ``info.verifiable`` (VERIFIABLE_SCHEMA)

    def declaration(self) -> dict[str, Any]:
        """The ``{"bazaar": {...}}`` extension before the server enriches it with the request."""
        output = OutputConfig(example=self.output_example, schema=self.output_schema)
        body = self.body_type if self.method.upper() in ("POST", "PUT", "PATCH") else None
        declared = declare_discovery_extension(
            input=self.input_example,
            input_schema=self.input_schema,
            path_params_schema=self.path_params_schema,
            body_type=body,  # type: ignore[arg-type]
            output=output if self.output_example is not None else None,
        )
        if self.verifiable is not None:
            bazaar = declared["bazaar"]
            bazaar["info"]["verifiable"] = dict(self.verifiable)
            bazaar["schema"].setdefault("properties", {})["verifiable"] = VERIFIABLE_SCHEMA
        return declared

    def request_context(self, resource_url: str) -> HTTPRequestContext:
        """The request facts the SDK's bazaar server extension reads (method, route, path)."""
        return HTTPRequestContext(
            adapter=_UrlAdapter(resource_url, self.method.upper()),
            path=urlsplit(resource_url).path,
            method=self.method.upper(),
            route_pattern=self.route_template,
        )


class _UrlAdapter:
    """The slice of the SDK's ``HTTPAdapter`` protocol that extension enrichment uses."""

    def __init__(self, url: str, method: str) -> None:
        self._url, self._method = url, method

    def get_header(self, name: str) -> str | None:
        return None

    def get_method(self) -> str:
        return self._method

    def get_path(self) -> str:
        return urlsplit(self._url).path

    def get_url(self) -> str:
        return self._url

    def get_accept_header(self) -> str:
        return "application/json"

    def get_user_agent(self) -> str:
        return ""

    def get_query_params(self) -> dict[str, str | list[str]] | None:
        return None

    def get_query_param(self, name: str) -> str | list[str] | None:
        return None

    def get_body(self) -> Any:
        return None


def settle_response(settlement: PaidOnChain, extensions: dict[str, Any] | None = None) -> SettleResponse:
    return SettleResponse(
        success=True,
        transaction=settlement.tx_hash,
        network=settlement.network,
        payer=settlement.payer,
        amount=str(settlement.amount),
        extensions=extensions or None,
    )


def payment_response_header(settlement: PaidOnChain, receipt: dict[str, Any] | None = None) -> str:
    """Base64 PAYMENT-RESPONSE of an ``exact`` settlement, its receipt in the extensions (``with_receipt``)."""
    return encode_payment_response_header(with_receipt(settle_response(settlement), receipt))


def payment_response_headers(payment: dict[str, Any] | None, receipt: dict[str, Any] | None,
                             network: str) -> dict[str, str]:
    """PAYMENT-RESPONSE of a call settled on chain, rebuilt from its stored ``payment`` and ``receipt`` (never stored
    itself); nothing for a payment with no transaction (free, or nothing moved)."""
    payment = payment or {}
    if not payment.get("transaction"):
        return {}
    settled = PaidOnChain(str(payment["transaction"]), str(payment.get("payer", "")), int(payment.get("amount", 0)),
                          str(payment.get("network", network)))
    return {"PAYMENT-RESPONSE": payment_response_header(settled, receipt)}


def with_receipt(response: SettleResponse, receipt: dict[str, Any] | None) -> SettleResponse:
    """``response`` with a receipt from ``sign_receipt`` in its extensions: ``offer-receipt`` carries the x402
    Receipt in the spec's shape (``info.receipt``); ``proofmarket-receipt`` the whole document, inference receipt
    included."""
    if receipt is None:
        return response
    extensions: dict[str, Any] = dict(response.extensions or {})
    if "x402" in receipt:
        extensions[OFFER_RECEIPT] = offer_receipt_extension(receipt)
    extensions[PROOFMARKET_RECEIPT] = {"info": receipt}
    return response.model_copy(update={"extensions": extensions})


# what an answer guarantees, as the bazaar extension's ``info.verifiable`` declares it
VERIFIABLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["guarantee", "proofFormat", "modelId", "verifier"],
    "properties": {
        "guarantee": {"type": "string", "description": "proven: a zero-knowledge proof of the output; attested: "
                                                       "signed, re-executable commitments (not a proof)"},
        "proofFormat": {"type": "string", "description": "the bundle's proof system (ezkl-halo2-kzg-bn254, ...)"},
        "modelId": {"type": "string", "description": "the model's manifest CID: it commits to the circuit and keys"},
        "verifier": {"type": ["object", "null"], "description": "the verifier contract of the model's registry "
                                                                "listing: chainId and address (null: not listed)"},
    },
}

# the infer route as x402 bazaar discovery describes it (the terms of a 402 carry it)
INFER_ROUTE_TEMPLATE = "/v1/models/:model_id/infer"
INFER_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "one inference input: EZKL form (one flat list per model input) or named tensors",
    "properties": {
        "input_data": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "inputs": {"type": "object", "additionalProperties": {"type": "array"}},
        "salt": {"type": "array", "items": {"type": "integer"}},
    },
}
INFER_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["job_id", "output", "bundle_cid", "bundle", "payment", "receipt"],
    "properties": {
        "job_id": {"type": "string"},
        "output": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "bundle_cid": {"type": "string", "description": "CID of the proof bundle (verify it offline)"},
        "bundle": {"type": "object", "description": "proofmarket/proof-bundle: the ZK proof of this output"},
        "payment": {"type": "object"},
        "receipt": {"type": "object", "description": "node-signed EIP-712 receipt binding payment and proof"},
    },
}
