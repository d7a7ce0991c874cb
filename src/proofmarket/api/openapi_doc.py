"""The OpenAPI document clients are generated from (``/openapi.json``), made true to what the node sends and takes:

- every 4xx/5xx answer (and ``default``: the ones any route may give, 413 body_too_large, 429 rate_limited, 500)
  is the node's one error document ``Error``: ``{"error": {"code", "message", "details"}}`` with a stable ``code``
  (``docs/reference/errors.md``); FastAPI's ``{"detail": [...]}``, which the node never sends, is gone;
- the credentials are security schemes on the routes that take them: the x402 payment (``PAYMENT-SIGNATURE`` in;
  ``PAYMENT-REQUIRED`` on the 402 and ``PAYMENT-RESPONSE`` on the paid answer, as response headers), an API key
  (``Authorization: Bearer pmk_...``), Sign-In with Ethereum (``X-Siwe-Message`` and ``X-Siwe-Signature`` together),
  the admin token and a job's token;
- the inference route's examples are the served models' own inputs (their tensors' shapes), made per request.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error", "type": "object", "required": ["error"],
    "description": "Every error the node answers (4xx and 5xx): a stable code, one sentence, and details.",
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "stable, machine-readable (docs/reference/errors.md)",
                     "examples": ["payment_required", "unknown_model", "invalid_input"]},
            "message": {"type": "string", "description": "one plain sentence: what went wrong and what to do"},
            "details": {"type": "object", "additionalProperties": True,
                        "description": "the values the message names (a field, a limit, the model id)"}}}}}
SCHEMES: dict[str, dict[str, Any]] = {
    "X402Payment": {"type": "apiKey", "in": "header", "name": "PAYMENT-SIGNATURE",
                    "description": "x402 v2: the payment payload (base64 JSON) that answers the terms of the 402's "
                                   "PAYMENT-REQUIRED header (an EIP-3009 authorization, or a batch-settlement "
                                   "voucher). X-PAYMENT (x402 v1) is also taken."},
    "ApiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "pmk_...",
               "description": "an API key made with POST /v1/keys: draws its wallet's credits, passes and free calls"},
    "SiweMessage": {"type": "apiKey", "in": "header", "name": "X-Siwe-Message",
                    "description": "Sign-In with Ethereum (EIP-4361) message, base64, with this node's resource "
                                   "(GET /.well-known/ai-service.json: address_signature.siwe); sent with "
                                   "X-Siwe-Signature"},
    "SiweSignature": {"type": "apiKey", "in": "header", "name": "X-Siwe-Signature",
                      "description": "the wallet's signature of X-Siwe-Message (EOA, ERC-1271 or ERC-6492)"},
}
Requirement = dict[str, list[str]]  # one alternative: every scheme it names, together
ADMIN: Requirement = {"AdminToken": []}
JOB: Requirement = {"JobToken": []}
KEY: Requirement = {"ApiKey": []}
PAY: Requirement = {"X402Payment": []}
SIGNED: Requirement = {"SiweMessage": [], "SiweSignature": []}
ANYONE: Requirement = {}  # no credential: a free model, a public listing
PAID = [ANYONE, PAY, KEY]  # free models take none; a paid one answers 402 with its terms
#: the routes whose credentials FastAPI cannot see (they read headers themselves): who may call each
SECURITY: dict[str, list[Requirement]] = {
    "infer": PAID, "generate": PAID, "buy_credits": [PAY], "buy_pass": [PAY],
    "openai_chat_completions": PAID, "openai_completions": PAID,
    "list_jobs": [ADMIN, JOB, SIGNED], "list_calls": [ADMIN, JOB, SIGNED], "list_requests": [SIGNED],
    "model_stats": [ADMIN, SIGNED], "get_earnings": [ANYONE, SIGNED], "whoami": [SIGNED],
    "create_api_key": [SIGNED], "list_api_keys": [SIGNED], "revoke_api_key": [SIGNED],
    "get_credits": [KEY, SIGNED], "list_passes": [SIGNED], "set_free_quota": [SIGNED], "refund_credits": [SIGNED],
    "create_webhook": [SIGNED], "list_webhooks": [SIGNED], "delete_webhook": [SIGNED],
    "list_channels": [ADMIN, SIGNED], "list_sweeps": [ADMIN, SIGNED], "get_sweep": [ADMIN, SIGNED],
    "get_channel": [ADMIN, SIGNED],
}
PAYMENT_HEADERS = {
    "402": {"PAYMENT-REQUIRED": "x402 v2: the payment terms (base64 JSON: accepts, resource), to sign and send back "
                                "as PAYMENT-SIGNATURE"},
    "200": {"PAYMENT-RESPONSE": "x402 v2: the settlement (base64 JSON: transaction, network, payer) of a paid call"},
}
ID_HEADER = {"X-Request-ID": {"description": "the request's id (the client's X-Request-ID when sane, else a new "
                                             "one): in the node's log lines and on the call", "schema": {"type":
                                                                                                       "string"}}}
DEFAULT_ERROR = "any other error: 400 bad_request, 413 body_too_large, 429 rate_limited, 500 internal_error, ..."


def install(app: FastAPI, examples: Callable[[], dict[str, Any]]) -> None:
    """``app.openapi`` answers the finished document; ``examples()`` gives the inference route's per-model examples
    (``{name: {"summary", "value"}}``), asked on every request of the document (models come and go)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(get_openapi(title=app.title, version=app.version, description=app.description,
                                                    routes=app.routes))
        extra = examples()
        if not extra:
            return app.openapi_schema
        doc = copy.deepcopy(app.openapi_schema)  # the cached document stays without any node's models
        for path, item in doc["paths"].items():
            if path.endswith("/infer") and "post" in item:
                content = item["post"]["requestBody"]["content"]["application/json"]
                content["examples"] = {**extra, **content.get("examples", {})}
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {}).update(SCHEMES)
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in doc["paths"].values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for code, response in responses.items():
                if code[0] in "45":
                    response["content"] = copy.deepcopy(error_ref)
                    if response.get("description") in (None, "", "Validation Error"):
                        response["description"] = "invalid_input: the request does not match the schema"
                response.setdefault("headers", {}).update(copy.deepcopy(ID_HEADER))
            responses["default"] = {"description": DEFAULT_ERROR, "content": copy.deepcopy(error_ref)}
            security = SECURITY.get(operation.get("operationId", ""))
            if security is not None:
                operation["security"] = copy.deepcopy(security)
                _header_parameters(operation, security)
                if security is PAID or PAY in security:
                    for code, headers in PAYMENT_HEADERS.items():
                        if code in responses:
                            responses[code]["headers"].update(
                                {name: {"description": text, "schema": {"type": "string"}}
                                 for name, text in headers.items()})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def _header_parameters(operation: dict[str, Any], security: list[Requirement]) -> None:
    """The schemes' headers also as optional parameters: generated clients then take them as named arguments."""
    names = [SCHEMES[scheme]["name"] for alternative in security for scheme in alternative
             if SCHEMES.get(scheme, {}).get("in") == "header"]
    params = operation.setdefault("parameters", [])
    have = {p.get("name", "").lower() for p in params}
    for name in dict.fromkeys(names):
        if name.lower() not in have:
            scheme = next(k for k, v in SCHEMES.items() if v.get("name") == name)
            params.append({"name": name, "in": "header", "required": False, "schema": {"type": "string"},
                           "description": SCHEMES[scheme]["description"]})


def model_examples(listings: list[dict[str, Any]]) -> dict[str, Any]:
    """One example per served proven model: its inputs' real sizes (``input_data``: a flat list per tensor)."""
    found: dict[str, Any] = {}
    for model in listings[:20]:
        tensors = model.get("inputs") or []
        if not tensors:
            continue
        data = []
        for tensor in tensors:
            size = 1
            for dim in tensor.get("shape") or []:
                size *= max(1, int(dim))
            data.append([0.0] * min(size, 4096))
        shapes = ", ".join(f"{t.get('name')} {t.get('shape')}" for t in tensors)
        found[f"model-{model['id'][-8:]}"] = {"summary": f"{model.get('name') or 'model'} ({model['id']}): {shapes}",
                                              "value": {"input_data": data}}
    return found
