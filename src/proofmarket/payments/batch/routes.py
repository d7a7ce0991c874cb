"""/v1/channels: x402 ``batch-settlement`` channels on this node (the rail is ``rail.py``; these routes reach the node
through the port's ``RailHost``, ``payments/routes.py``).

    GET  /v1/channels/refund         the SDK client's ``refund(url)``: without a payment 402 with the channel
                                     terms; with a refund payload the charged total is claimed and the rest of the
                                     channel (or the amount asked) goes back to the payer: 200 + PAYMENT-RESPONSE
    GET  /v1/channels?payer=0x..     a payer's channels as the node mirrors them (balance, charged, claimed): signed
                                     by that payer (purpose ``channels``) or the admin
    GET  /v1/channels/{channel_id}   one channel: its payer (signed, purpose ``channels``) or the admin
    GET  /v1/channels/sweeps         the sweeps: claim and settle transactions, per-payee transfers
    GET  /v1/channels/sweeps/{id}    one sweep with the charges it covered (model, payee, amount, node receipt):
                                     what an owner checks against the chain
    POST /v1/channels/sweep          the operator (admin token): claim and sweep now
What a payer spent off chain is its own: the admin sees everything; an address that signs (purpose ``sweeps``) sees
its own charges as a payer and, as a payee or a model's owner, its totals (never another payer's charges, receipts
or bundle CIDs); nobody else sees a sweep (401). 404 ``channels_unavailable`` when the node does not offer
batch-settlement.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from x402.mechanisms.evm.batch_settlement.server.storage import Channel

from proofmarket.core.errors import ChannelsUnavailable, PaymentRequired, Unauthorized, UnknownChannel, UsageError
from proofmarket.payments.batch.rail import NAME, BatchSettlementRail
from proofmarket.payments.headers import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    encode_payment_response_header,
    with_receipt,
)
from proofmarket.payments.routes import ADMIN_OR_SIGNED, ADMIN_SECURITY, HostDep, RailHost

router = APIRouter(prefix="/v1/channels", tags=["payments"])
MAX_LISTED = 200
CHANNEL_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")


def _rail(host: RailHost) -> BatchSettlementRail:
    rail = host.rail(BatchSettlementRail)
    if rail is None:
        raise ChannelsUnavailable("this node does not offer x402 batch-settlement channels")
    return rail


def channel_view(channel: Channel) -> dict[str, Any]:
    pending = channel.pending_request
    return {"channel_id": channel.channel_id, "payer": channel.channel_config.payer,
            "receiver": channel.channel_config.receiver, "token": channel.channel_config.token,
            "withdraw_delay_s": channel.channel_config.withdraw_delay, "balance": channel.balance,
            "charged": channel.charged_cumulative_amount, "claimed": channel.total_claimed,
            "unclaimed": str(max(0, int(channel.charged_cumulative_amount) - int(channel.total_claimed))),
            "available": str(max(0, int(channel.balance) - int(channel.charged_cumulative_amount))),
            "withdraw_requested_at": channel.withdraw_requested_at, "refund_nonce": channel.refund_nonce,
            "call_in_flight": pending is not None}


@router.get("/refund", operation_id="channel_refund",
            responses={402: {"description": "the channel terms (no payment), or payment_channel_rejected"}})
async def refund(request: Request, host: HostDep) -> Any:
    """A payer's cooperative refund of its channel (the x402 SDK client's ``refund(url)`` calls this URL)."""
    rail = _rail(host)
    header = request.headers.get(PAYMENT_SIGNATURE_HEADER)
    if not header:
        err = PaymentRequired("send a batch-settlement refund payload in PAYMENT-SIGNATURE to refund your channel")
        terms = host.payment_terms([rail.refund_terms()], f"{host.base_url()}/v1/channels/refund",
                                   description="refund of an x402 batch-settlement channel", error=err.code)
        if terms is not None:
            err.headers = {PAYMENT_REQUIRED_HEADER: terms}
        raise err
    response, channel = await run_in_threadpool(rail.refund, header)
    return JSONResponse({"refunded": response.amount or None, "transaction": response.transaction,
                         "channel": channel_view(channel)},
                        headers={"PAYMENT-RESPONSE": encode_payment_response_header(with_receipt(response, None))})


@router.get("", operation_id="list_channels", responses={401: {"description": "not signed by the payer"}},
            openapi_extra=ADMIN_OR_SIGNED)
async def list_channels(host: HostDep,
                        payer: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$")]) -> dict[str, Any]:
    """A payer's channels on this node (signed by the payer, purpose ``channels``, or the admin)."""
    rail = _rail(host)
    if not host.is_admin() and await host.signed("channels") != payer.lower():
        raise Unauthorized("a payer's channels are read by that payer (signed, purpose 'channels') or the admin")
    channels = await run_in_threadpool(rail.storage.of_payer, payer)
    return {"scheme": NAME, "terms": rail.describe(), "channels": [channel_view(c) for c in channels[:MAX_LISTED]]}


@router.get("/sweeps", operation_id="list_sweeps", responses={401: {"description": "not signed, not the admin"}},
            openapi_extra=ADMIN_OR_SIGNED)
async def list_sweeps(host: HostDep, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    """The latest sweeps (claims, the settle to the node's account, the payouts): the admin sees every payee; a signed
    address (purpose ``sweeps``) its own allocations as a payee or owner."""
    rail = _rail(host)
    viewer = None if host.is_admin() else await run_in_threadpool(_viewer, host)
    rows = await run_in_threadpool(rail.storage.repo.sweeps, limit=limit)
    return {"sweeps": [{"id": r.id, "status": r.status, "amount": str(r.amount) if viewer is None else None,
                        "claim_txs": r.claim_txs, "settle_tx": r.settle_tx,
                        "allocations": _allocations(r.allocations or {}, viewer), "error": r.error,
                        "created_at": r.created_at.isoformat()} for r in rows]}


@router.get("/sweeps/{sweep_id}", operation_id="get_sweep", responses={401: {"description": "not signed"}},
            openapi_extra=ADMIN_OR_SIGNED)
async def get_sweep(sweep_id: int, host: HostDep) -> dict[str, Any]:
    """One sweep with the charges it covered (each with its model, payee, amount and the node's signed receipt): the
    admin sees all; a signed address (purpose ``sweeps``) its own charges as a payer and its totals as a payee."""
    rail = _rail(host)
    if rail.sweeper is None:
        raise ChannelsUnavailable("this node does not sweep channels (no sweeper runs here)")
    viewer = None if host.is_admin() else await run_in_threadpool(_viewer, host)
    found = await run_in_threadpool(rail.sweeper.describe, sweep_id)
    if found is None:
        raise UnknownChannel(f"there is no sweep {sweep_id} on this node", sweep_id=sweep_id)
    if viewer is not None:
        address, _ = viewer
        found["charges"] = [c for c in found["charges"] if _payer_of(c) == address]
        found["allocations"] = _allocations(found["allocations"], viewer)
        found["amount"] = None
    return found


def _viewer(host: RailHost) -> tuple[str, set[str]]:
    """The signing address (purpose ``sweeps``) and the models it owns."""
    address = host.signed_address("sweeps")
    return address, host.owned_models(address)


def _allocations(allocations: dict[str, Any], viewer: tuple[str, set[str]] | None) -> dict[str, Any]:
    """Every payee's allocation for the admin; for a signed address, its own as a payee, and the totals of the models
    it owns."""
    if viewer is None:
        return allocations
    address, owned = viewer
    out: dict[str, Any] = {}
    for payee, alloc in allocations.items():
        models = {m: a for m, a in (alloc.get("models") or {}).items() if payee == address or m in owned}
        if models:
            out[payee] = {"models": models, "tx": alloc.get("tx"),
                          "amount": str(sum(int(a) for a in models.values()))}
    return out


def _payer_of(charge: dict[str, Any]) -> str:
    message = ((charge.get("receipt") or {}).get("typedData") or {}).get("message") or {}
    return str(message.get("payer", "")).lower()


SWEEP_WAIT_S = 120.0  # another node's sweep in progress: waited for, then this one sweeps what is left


@router.post("/sweep", operation_id="sweep_channels", openapi_extra=ADMIN_SECURITY)
async def sweep_now(host: HostDep) -> dict[str, Any]:
    """Claim every channel's charged total and sweep it now (the operator; the node also does it on a schedule)."""
    host.require_admin()
    rail = _rail(host)
    if rail.sweeper is None:
        raise UsageError("this node does not sweep channels (no sweeper runs here)")
    done = await run_in_threadpool(rail.sweeper.run, SWEEP_WAIT_S)
    return {"sweep": done}


@router.get("/{channel_id}", operation_id="get_channel", responses={401: {"description": "not signed by its payer"}},
            openapi_extra=ADMIN_OR_SIGNED)
async def get_channel(channel_id: str, host: HostDep) -> dict[str, Any]:
    """One channel as this node mirrors it (its payer, signed with purpose ``channels``, or the admin)."""
    rail = _rail(host)
    if not CHANNEL_ID.match(channel_id):
        raise UnknownChannel(f"{channel_id!r} is not a channel id (0x and 64 hex digits)", channel_id=channel_id)
    channel = await run_in_threadpool(rail.storage.get, channel_id)
    if channel is None:
        raise UnknownChannel(f"there is no channel {channel_id} on this node", channel_id=channel_id)
    if not host.is_admin() and await host.signed("channels") != channel.channel_config.payer.lower():
        raise Unauthorized("a channel is read by its payer (signed, purpose 'channels') or the admin")
    return channel_view(channel)
