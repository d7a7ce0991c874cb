"""/v1/webhooks: an owner's subscriptions to their models' events (``marketplace/webhooks.py``).

    POST   /v1/webhooks        subscribe (signed by the owner's address, purpose ``webhook-<sha256 of the body, first
                               16 hex>``): body {url, events: [call, payout, challenge], model_id?}
    GET    /v1/webhooks        the owner's subscriptions and recent deliveries (signed, purpose ``webhooks``)
    DELETE /v1/webhooks/{id}   unsubscribe (signed, purpose ``webhook-revoke-<id>``)

Addresses sign as for history reads (``X-Address``, ``X-Address-Time``, ``X-Address-Nonce``,
``X-Address-Signature``). Deliveries carry ``X-Proofmarket-Delivery``, ``-Event``, ``-Timestamp``, ``-Signature``
(the node's EIP-191 signature of ``proofmarket-webhook:{delivery}:{timestamp}:{sha256 of the body}``) and
``-Signer`` (the node's address): ``proofmarket.sdk.webhooks.verify_webhook`` checks them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool

from proofmarket.api.deps import ServicesDep
from proofmarket.api.signed import signed_elsewhere
from proofmarket.core.address_signature import body_purposes
from proofmarket.core.errors import UsageError
from proofmarket.marketplace.webhooks import EVENTS, Webhooks

router = APIRouter(tags=["webhooks"])
SIGNED: dict[int | str, dict[str, Any]] = {401: {"description": "unauthorized (no or bad address signature)"}}


def _hooks(services: Any) -> Webhooks:
    hooks: Webhooks | None = services.webhooks
    if hooks is None:
        raise UsageError("this node sends no webhooks")
    return hooks


@router.post("/v1/webhooks", operation_id="create_webhook", status_code=201,
             responses={**SIGNED, 403: {"description": "forbidden (not the model's owner, too many webhooks)"},
                        422: {"description": "webhook_target_refused"}})
async def create_webhook(request: Request, services: ServicesDep,
                         body: Annotated[dict[str, Any], Body(description="{url, events, model_id?}")]
                         ) -> dict[str, Any]:
    """Subscribe the signing owner's URL to events of its models: ``call`` (a call ended), ``payout`` (a paid
    call captured), ``challenge`` (a court request was challenged). The answer's ``secret`` (``whsec_...``, shown
    once) checks each delivery the Standard Webhooks way (``webhook-signature``), beside the node's signature."""
    hooks = _hooks(services)
    owner = await signed_elsewhere(request, body_purposes(body, "webhook"))
    url, events, model_id = body.get("url"), body.get("events", list(EVENTS)), body.get("model_id")
    if not isinstance(url, str) or not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise UsageError("the body is {url: string, events: [call | payout | challenge], model_id?: string}")
    if model_id is not None and (not isinstance(model_id, str) or len(model_id) > 64):
        raise UsageError("model_id must be a model id")
    row = await run_in_threadpool(hooks.subscribe, owner, url, events, model_id)
    return {**row.view(), "secret": row.secret}  # shown once: deliveries are signed with it (Standard Webhooks)


@router.get("/v1/webhooks", operation_id="list_webhooks", responses=SIGNED)
async def list_webhooks(request: Request, services: ServicesDep) -> dict[str, Any]:
    """The signing owner's subscriptions and their recent deliveries (status, attempts, last error)."""
    hooks = _hooks(services)
    owner = await signed_elsewhere(request, "webhooks")
    subs = await run_in_threadpool(hooks.subscriptions, owner)
    sent = await run_in_threadpool(hooks.deliveries, owner)
    return {"owner": owner, "webhooks": [s.view() for s in subs], "deliveries": [d.view() for d in sent]}


@router.delete("/v1/webhooks/{webhook_id}", operation_id="delete_webhook", responses=SIGNED)
async def delete_webhook(webhook_id: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Unsubscribe: no delivery is made for it from now on."""
    hooks = _hooks(services)
    owner = await signed_elsewhere(request, f"webhook-revoke-{webhook_id}")
    return {"id": webhook_id, "revoked": await run_in_threadpool(hooks.revoke, owner, webhook_id)}
