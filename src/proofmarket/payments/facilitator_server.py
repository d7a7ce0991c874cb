"""A self-hosted x402 facilitator over HTTP: the SDK's ``x402FacilitatorSync`` (the ``exact``, ``batch-settlement``
and ``upto`` EVM schemes and a ``FacilitatorWeb3Signer``, built by
:func:`proofmarket.payments.facilitators.local_facilitator`) behind the facilitator API the SDK's
``HTTPFacilitatorClient`` speaks:

    GET  /supported   {"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:<id>"}], "signers": ...}
    POST /verify      {"x402Version": 2, "paymentPayload": {...}, "paymentRequirements": {...}} -> VerifyResponse
    POST /settle      the same body                                                               -> SettleResponse

A refusal is an answer, not an HTTP error: 200 with ``isValid: false`` / ``success: false`` and the SDK's reason
(the client raises on anything but 200), its message stripped of the RPC URL (the SDK quotes RPC errors; an
unreachable RPC is such a refusal, which the node's gate reads as ``facilitator_unavailable``). A body that is
not such a request is 400 (413 over the size limit, 400 nested deeper than ``proofmarket.core.jsonlimits``
allows); an unexpected failure is 500, logged here and answered without its text.

It serves x402 version 2 on the one network of its RPC: the SDK also registers the version-1 scheme for every
public EVM network, which this signer (one RPC, one chain) cannot settle on, so those are neither listed nor
served. Its key pays the gas of settlements: give it a key of its own (``PROOFMARKET_FACILITATOR_KEY``), never
the node's (the signer keeps its own nonce counter: two senders on one key race for nonces).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from x402 import x402FacilitatorSync
from x402.mechanisms.evm.constants import ERR_UNSUPPORTED_SCHEME
from x402.schemas import PaymentPayload, PaymentRequirements, SchemeNotFoundError, SettleResponse, VerifyResponse

from proofmarket.chain.client import ChainClient
from proofmarket.chain.devkeys import dev_account
from proofmarket.chain.home import MarketHome
from proofmarket.chain.keystore import key_source, resolve_key
from proofmarket.core import jsonlimits
from proofmarket.core.errors import JsonTooDeep, JsonTooLarge, UsageError
from proofmarket.core.profiles import network_id
from proofmarket.core.settings import Settings, X402Settings
from proofmarket.payments.facilitators import local_facilitator

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024  # a verify or settle body is about 1.5 kB
X402_VERSION = 2
DEV_FACILITATOR_SERVE_INDEX = 9  # devnet: not the node's in-process facilitator (8) nor a market role (0-3)


@dataclass(frozen=True)
class ServedFacilitator:
    """What ``facilitator_app`` serves: the SDK facilitator, its network and the account that pays gas."""

    facilitator: x402FacilitatorSync
    network: str
    signer: str
    rpc_url: str = ""  # never in an answer: the SDK's messages quote RPC errors, whose URL may carry an API key

    def redacted(self, text: str | None) -> str | None:
        """``text`` without the RPC URL, its path or its query (where providers put API keys)."""
        if not text or not self.rpc_url:
            return text
        parts = urlsplit(self.rpc_url)
        for secret in (self.rpc_url, parts.path if len(parts.path) > 1 else "", parts.query):
            if secret:
                text = text.replace(secret, "<rpc>")
        return text


def build_facilitator(rpc_url: str, signer: LocalAccount, *, confirmation_timeout_seconds: float = 60.0,
                      client: ChainClient | None = None) -> ServedFacilitator:
    """The SDK facilitator for the chain of ``rpc_url``, settling with ``signer`` (the in-process facilitator's
    construction, ``local_facilitator``)."""
    chain_id = (client or ChainClient(rpc_url)).chain_id
    network = network_id(chain_id)
    facilitator = local_facilitator(signer, rpc_url, network, confirmation_timeout_seconds=confirmation_timeout_seconds)
    return ServedFacilitator(facilitator, network, signer.address, rpc_url)


def facilitator_rpc(settings: Settings) -> str:
    """PROOFMARKET_RPC_URL, else the devnet ``proofmarket chain up`` recorded in this home."""
    if settings.chain.rpc_url:
        return settings.chain.rpc_url
    devnet = MarketHome(settings.home).devnet()
    if devnet is None:
        raise UsageError("set PROOFMARKET_RPC_URL (the chain the facilitator settles on), or start the devnet "
                         "with 'proofmarket chain up'")
    return devnet.rpc_url


def facilitator_account(settings: Settings, extra: X402Settings, chain_id: int) -> LocalAccount:
    """The facilitator role's key (its keystore, PROOFMARKET_FACILITATOR_KEYSTORE or HOME/keys/facilitator.json;
    a plain PROOFMARKET_FACILITATOR_KEY on the devnet only); unset, a dev account where the chain's profile allows
    dev keys. Never the node's or the owner's account: two senders on one key race for nonces."""
    account = resolve_key("facilitator", settings, chain_id, extra)
    if account is None:
        if not settings.profile(chain_id).dev_keys_allowed:
            raise UsageError(f"chain id {chain_id} is not the devnet: give the facilitator a funded key of its own "
                             "(it pays the gas of settlements): 'proofmarket keys new --role facilitator'",
                             chain_id=chain_id)
        return dev_account(DEV_FACILITATOR_SERVE_INDEX, chain_id)
    for role in ("node", "owner"):
        other = key_source(role, settings, extra).address
        if other is not None and other.lower() == account.address.lower():
            raise UsageError(f"the facilitator's key is the {role}'s: give the facilitator a key of its own "
                             "(two senders on one key race for nonces)")
    return account


def facilitator_app(served: ServedFacilitator, *, max_body_bytes: int = MAX_REQUEST_BYTES,
                    token: str | None = None) -> Starlette:
    """The HTTP app of ``served``: ``GET /supported``, ``POST /verify``, ``POST /settle``, ``GET /health``.
    With ``token``, every route but ``/health`` answers 401 ``unauthorized`` unless the request carries
    ``Authorization: Bearer <token>`` (compared in constant time)."""

    async def supported(request: Request) -> JSONResponse:
        answer = served.facilitator.get_supported()
        kinds = [k for k in answer.kinds if k.x402_version == X402_VERSION and k.network == served.network]
        return _json(answer.model_copy(update={"kinds": kinds}))

    async def answer(request: Request, what: str, act: Callable[..., Any],
                     unsupported: Callable[[Exception, Any], Any], message: str) -> JSONResponse:
        """``what`` (verify or settle) of the posted payment; an unknown scheme is the SDK's refusal, redacted."""
        parsed = await _parsed(request, served.network, max_body_bytes)
        if isinstance(parsed, JSONResponse):
            return parsed
        try:
            _check_network(parsed, served.network)
            result = await run_in_threadpool(act, *parsed)
        except SchemeNotFoundError as exc:
            result = unsupported(exc, parsed[1])
        except Exception as exc:
            return _failed(what, exc)
        return _json(result.model_copy(update={message: served.redacted(getattr(result, message))}))

    async def verify(request: Request) -> JSONResponse:
        return await answer(request, "verify", served.facilitator.verify, lambda exc, _: VerifyResponse(
            is_valid=False, invalid_reason=ERR_UNSUPPORTED_SCHEME, invalid_message=str(exc)), "invalid_message")

    async def settle(request: Request) -> JSONResponse:
        return await answer(request, "settle", served.facilitator.settle, lambda exc, requirements: SettleResponse(
            success=False, error_reason=ERR_UNSUPPORTED_SCHEME, error_message=str(exc), transaction="",
            network=requirements.network), "error_message")

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "network": served.network, "signer": served.signer})

    def guarded(handler: Callable[[Request], Awaitable[JSONResponse]]) -> Callable[[Request], Awaitable[JSONResponse]]:
        if not token:
            return handler

        async def checked(request: Request) -> JSONResponse:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _refused(401, "unauthorized", "this facilitator needs its bearer token "
                                                     "(Authorization: Bearer ...; PROOFMARKET_FACILITATOR_TOKEN)")
            return await handler(request)

        return checked

    return Starlette(routes=[Route("/supported", guarded(supported), methods=["GET"]),
                             Route("/verify", guarded(verify), methods=["POST"]),
                             Route("/settle", guarded(settle), methods=["POST"]),
                             Route("/health", health, methods=["GET"])])


async def _parsed(request: Request, network: str,
                  limit: int) -> tuple[PaymentPayload, PaymentRequirements] | JSONResponse:
    """The body's payload and requirements, or the 4xx answer that refuses it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _refused(413, "json_too_large", f"the request is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _refused(413, "json_too_large", f"the request is over the limit of {limit} bytes")
    try:
        doc = jsonlimits.loads(bytes(body), max_bytes=limit, what="the request")
    except JsonTooLarge as exc:
        return _refused(413, exc.code, exc.message)
    except JsonTooDeep as exc:
        return _refused(400, exc.code, exc.message)
    except ValueError:
        return _refused(400, "invalid_request", "the request is not JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("paymentPayload"), dict) \
            or not isinstance(doc.get("paymentRequirements"), dict):
        return _refused(400, "invalid_request", "the request is {x402Version, paymentPayload, paymentRequirements}")
    if doc.get("x402Version") != X402_VERSION or doc["paymentPayload"].get("x402Version") != X402_VERSION:
        return _refused(400, "unsupported_version", f"this facilitator serves x402 version {X402_VERSION} on "
                                                    f"{network} only")
    try:
        return (PaymentPayload.model_validate(doc["paymentPayload"]),
                PaymentRequirements.model_validate(doc["paymentRequirements"]))
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()}))
        return _refused(400, "invalid_request", f"the payment payload or requirements are not valid ({fields})")


def _check_network(parsed: tuple[PaymentPayload, PaymentRequirements], network: str) -> None:
    """The SDK matches its registered networks by pattern (``eip155:*``): a payment for another chain would be
    sent to this RPC's chain. Only the served network is: ``SchemeNotFoundError`` otherwise."""
    payload, requirements = parsed
    for named in (requirements.network, payload.accepted.network):
        if named != network:
            raise SchemeNotFoundError(requirements.scheme, named)


def _json(model: BaseModel) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json", by_alias=True, exclude_none=True))


def _refused(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _failed(action: str, exc: Exception) -> JSONResponse:
    """An internal failure: logged here, answered without its text (an RPC URL may carry an API key)."""
    log.error("the facilitator could not %s a payment", action, exc_info=exc)
    return JSONResponse({"error": "facilitator_error",
                         "message": f"the facilitator could not {action} the payment ({type(exc).__name__})"},
                        status_code=500)


__all__ = ["DEV_FACILITATOR_SERVE_INDEX", "MAX_REQUEST_BYTES", "ServedFacilitator", "build_facilitator",
           "facilitator_account", "facilitator_app", "facilitator_rpc"]
