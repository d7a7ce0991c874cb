"""/v1/keys and /v1/credits: API keys and prepaid credits (the ``credits`` rail, ``rail.py``; these routes reach the
node through the port's ``RailHost``, ``payments/routes.py``).

    POST   /v1/keys                  a new key for the wallet that signs the request (purpose ``api-key-<sha256 of
                                     the body, first 16 hex>``: the signature binds the scope, cap and expiry);
                                     body {models?, cap_atomic?, expires_in_s?}; the key is in this answer only
    GET    /v1/keys                  the wallet's keys (signed, purpose ``api-keys``; never their secrets)
    DELETE /v1/keys/{id}             revoke (signed, purpose ``api-key-revoke-<id>``)
    GET    /v1/credits               the balance and ledger of the wallet that signed (purpose ``credits``); asked
                                     with an API key (``Authorization: Bearer pmk_...``): its wallet's balance and
                                     that key's own entries only
    POST   /v1/credits/buy?amount=N  credits for one x402 ``exact`` payment of N atomic USDC to the node's account
                                     (402 with the terms first); the payer's wallet is credited once the payment is
                                     mined: 200, or 202 with ``/v1/purchases/{id}`` to poll while it is not
    GET    /v1/purchases/{id}        a purchase's state: pending, credited (its transaction) or voided
    POST   /v1/credits/deposit       {tx_hash}: a USDC transfer to the node's account, credited to its sender once
    POST   /v1/credits/refund        the wallet's unspent credits (not held by unsettled calls) back on chain
                                     (signed, purpose ``credits-refund``)
    POST   /v1/passes/buy            N calls a day for D days (one model, or any) for one x402 payment of N x D calls
    GET    /v1/passes                the wallet's live passes (signed, purpose ``passes``)
    POST   /v1/models/{id}/free-quota  the model's owner gives every key N free calls a day on it (signed by the
                                     owner, purpose ``free-quota-<id>-<N>``)
A keyed call is paid by the model's free quota first (while the key has free calls left today), then by a live pass
of its wallet, then from credits.
Addresses sign as for history reads (``X-Address``, ``X-Address-Time``, ``X-Address-Nonce``,
``X-Address-Signature``: ``proofmarket-{purpose}:{address}:{node}:{time}:{nonce}``, EIP-191). 404
``credits_unavailable`` when the node takes no payments.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from proofmarket.core.address_signature import body_purposes
from proofmarket.core.errors import CreditsUnavailable, Forbidden, UsageError
from proofmarket.payments.credits.rail import CreditsRail, api_key_of
from proofmarket.payments.credits.statement import statement
from proofmarket.payments.headers import PAYMENT_SIGNATURE_HEADER
from proofmarket.payments.routes import HostDep, RailHost

FREE_TOTAL_FACTOR = 10  # a model's free calls of every payer together, by default: 10 payers' worth a day
router = APIRouter(tags=["credits"])
MAX_BUY_ATOMIC = 10_000 * 10**6  # 10,000 USDC in one purchase
MAX_SCOPE = 100
MAX_KEYS = 50  # live keys a wallet may hold, and keys it may make in 24 hours (each has its own free calls a day)


def _rail(host: RailHost) -> CreditsRail:
    rail = host.rail(CreditsRail)
    if rail is None:
        raise CreditsUnavailable("this node sells no API keys or credits (payments are off)")
    return rail


async def _wallets(host: RailHost, purpose: str, field: str, read: Callable[[CreditsRail, str], list[Any]]
                   ) -> dict[str, Any]:
    """The signing wallet's rows of one kind (``read``), as the wallet may see them (never a key's secret)."""
    rail = _rail(host)
    wallet = await host.signed(purpose)
    return {"wallet": wallet, field: [row.view() for row in await run_in_threadpool(read, rail, wallet)]}


@router.post("/v1/keys", operation_id="create_api_key", status_code=201,
             responses={401: {"description": "unauthorized (no or bad address signature)"}})
async def create_key(host: HostDep,
                     body: Annotated[dict[str, Any], Body(description="{models?, cap_atomic?, expires_in_s?}")]
                     ) -> dict[str, Any]:
    """A new API key for the signing wallet: its secret is shown in this answer only."""
    rail = _rail(host)
    wallet = await host.signed(body_purposes(body))
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not 0 < len(models) <= MAX_SCOPE
                               or not all(isinstance(m, str) and 0 < len(m) <= 128 for m in models)):
        raise UsageError(f"models must be a list of 1 to {MAX_SCOPE} model ids")
    cap = body.get("cap_atomic")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int | str) or not str(cap).isdigit()):
        raise UsageError("cap_atomic must be a whole number of atomic USDC units")
    expires = body.get("expires_in_s")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0):
        raise UsageError("expires_in_s must be a positive number of seconds")
    until = datetime.now(UTC) + timedelta(seconds=expires) if expires else None
    secret, row = await run_in_threadpool(rail.new_key, wallet, models=models,
                                          cap_atomic=int(cap) if cap is not None else None, expires_at=until,
                                          max_keys=MAX_KEYS)
    return {"key": secret, **row.view(), "note": "the key is shown once: keep it; the node keeps only its hash"}


@router.get("/v1/keys", operation_id="list_api_keys")
async def list_keys(host: HostDep) -> dict[str, Any]:
    """The signing wallet's keys (never their secrets)."""
    return await _wallets(host, "api-keys", "keys", lambda rail, wallet: rail.repo.keys_of(wallet))


@router.delete("/v1/keys/{key_id}", operation_id="revoke_api_key")
async def revoke_key(key_id: str, host: HostDep) -> dict[str, Any]:
    """Revoke one of the signing wallet's keys: it is refused from the next request on."""
    rail = _rail(host)
    wallet = await host.signed(f"api-key-revoke-{key_id}")
    if not await run_in_threadpool(rail.repo.revoke, key_id, wallet):
        raise UsageError(f"the wallet has no live key {key_id}", key_id=key_id)
    return {"id": key_id, "revoked": True}


@router.get("/v1/credits", operation_id="get_credits")
async def credits(request: Request, host: HostDep) -> dict[str, Any]:
    """A wallet's balance and statement from the book (``ledger``, newest first: purchases, deposits, draws and
    refunds, each posted, pending or void, with its transaction or call and the balance after it): signed by the
    wallet, or asked with one of its API keys (then another key's draws are left out)."""
    rail = _rail(host)
    key = await run_in_threadpool(rail.key, request.headers) if api_key_of(request.headers) else None
    wallet = key.wallet if key is not None else await host.signed("credits")
    balance = await run_in_threadpool(rail.repo.balance, wallet)
    held = await run_in_threadpool(host.held_by, wallet)
    book = await run_in_threadpool(statement, rail.repo.book, wallet, key_id=key.id if key is not None else None)
    out: dict[str, Any] = {"wallet": wallet, "balance": str(balance), "held": str(held),
                           "posted": book["posted"], "ledger": book["entries"]}
    if key is not None:  # a key (maybe scoped and capped, handed to a browser) reads its own draws, not another's
        out["key"] = key.view()
    return out


@router.post("/v1/credits/buy", operation_id="buy_credits",
             responses={202: {"description": "paid, the transfer not mined yet: poll the purchase"},
                        402: {"description": "the x402 terms of the purchase, or a refused payment"}})
async def buy(request: Request, host: HostDep,
              amount: Annotated[int, Query(gt=0, le=MAX_BUY_ATOMIC, description="atomic USDC to buy")]
              ) -> JSONResponse:
    """Credits for one x402 payment (exact, USDC to the node's account): the payer's wallet is credited once the
    payment is mined (202 with the purchase to poll while it is not)."""
    resource = f"{host.base_url()}/v1/credits/buy?amount={amount}"
    return await _purchase(request, host, amount, resource, f"{amount} atomic USDC of credits",
                           {"kind": "credits"})


@router.post("/v1/passes/buy", operation_id="buy_pass",
             responses={202: {"description": "paid, the transfer not mined yet: poll the purchase"},
                        402: {"description": "the x402 terms of the pass, or a refused payment"}})
async def buy_pass(request: Request, host: HostDep,
                   calls_per_day: Annotated[int, Query(gt=0, le=100_000)],
                   days: Annotated[int, Query(gt=0, le=366)],
                   model_id: Annotated[str | None, Query(max_length=128, description="one model; unset = any")]
                   = None) -> JSONResponse:
    """A pass (N calls a day for D days) for one x402 payment: N x D calls at the model's price (unset: the dearest
    model's). API keys of the payer's wallet call within it before drawing credits; each call pays the called
    model's payee the pass's price per call."""
    _rail(host)
    per_call = await run_in_threadpool(host.price_of, model_id)
    if per_call is None:
        raise UsageError("this node serves no model to sell a pass for")
    price = per_call * calls_per_day * days
    if price > MAX_BUY_ATOMIC:
        raise UsageError(f"a pass of {calls_per_day} calls a day for {days} days costs {price}: above the limit")
    query = f"calls_per_day={calls_per_day}&days={days}" + (f"&model_id={model_id}" if model_id else "")
    resource = f"{host.base_url()}/v1/passes/buy?{query}"
    return await _purchase(request, host, price, resource,
                           f"a pass of {calls_per_day} calls a day for {days} days",
                           {"kind": "pass", "calls_per_day": calls_per_day, "days": days, "model_id": model_id})


@router.get("/v1/purchases/{purchase_id}", operation_id="get_purchase",
            responses={400: {"description": "no such purchase"}})
async def get_purchase(purchase_id: Annotated[str, Path(max_length=200, pattern=r"^[0-9A-Za-z:_.-]+$")],
                       host: HostDep) -> dict[str, Any]:
    """What became of a purchase (its id is its payment's key): pending, credited (with its transaction) or voided
    (nothing charged). The wallet's balance is not shown here (``GET /v1/credits``, signed)."""
    return await run_in_threadpool(host.checkout().view, purchase_id)  # the settler follows it on chain, not this read


@router.get("/v1/passes", operation_id="list_passes")
async def list_passes(host: HostDep) -> dict[str, Any]:
    """The signing wallet's live passes (purpose ``passes``)."""
    return await _wallets(host, "passes", "passes", lambda rail, wallet: rail.repo.passes(wallet))


@router.post("/v1/models/{model_id}/free-quota", operation_id="set_free_quota")
async def set_free_quota(model_id: str, host: HostDep,
                         body: Annotated[dict[str, Any], Body(description="{calls_per_day, total_per_day}: 0 ends it")]
                         ) -> dict[str, Any]:
    """The model's owner gives each funded payer wallet ``calls_per_day`` free calls a day on it, and every payer
    together ``total_per_day`` (what the owner pays for; default ``FREE_TOTAL_FACTOR`` x ``calls_per_day``). Signed
    by the owner, purpose ``free-quota-<model id>-<N>`` (``-<T>`` appended when ``total_per_day`` is given). A wallet
    takes free calls only while it holds ``PROOFMARKET_FREE_MIN_BALANCE_ATOMIC`` in credits (held a day after)."""
    rail = _rail(host)
    calls, total = body.get("calls_per_day"), body.get("total_per_day")
    for name, value in (("calls_per_day", calls), ("total_per_day", total)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or
                                  not 0 <= value <= 1_000_000):
            raise UsageError(f"{name} must be a whole number from 0 to 1,000,000")
    if calls is None:
        raise UsageError("calls_per_day must be a whole number from 0 to 1,000,000")
    purpose = f"free-quota-{model_id}-{calls}" + (f"-{total}" if total is not None else "")
    total = total if total is not None else min(1_000_000, calls * FREE_TOTAL_FACTOR)
    if total < calls:
        raise UsageError("total_per_day (every payer together) must be at least calls_per_day (one payer)")
    owner = (await run_in_threadpool(host.owner_of, model_id) or "").lower()
    signer = await host.signed(purpose)
    if not owner or signer != owner:
        raise Forbidden("only the model's owner sets its free quota", model_id=model_id)
    await run_in_threadpool(rail.repo.set_free_quota, model_id, calls, signer, total)
    return {"model_id": model_id, "calls_per_day": calls, "total_per_day": total,
            "min_balance_atomic": str(rail.free_min_balance)}


async def _purchase(request: Request, host: RailHost, amount: int, resource: str, description: str,
                    what: dict[str, Any]) -> JSONResponse:
    """One x402 exact payment of ``amount`` to the node's account, held in the book and credited once settled
    (``payments/purchases.py``): 200 credited, 202 pending. Without a payment: 402 with the terms."""
    rail = _rail(host)
    checkout = host.checkout()
    header = request.headers.get(PAYMENT_SIGNATURE_HEADER)
    view = await run_in_threadpool(checkout.checkout, header, amount, rail.node.address, resource, description, what)
    return _purchase_answer(view)


def _purchase_answer(view: dict[str, Any]) -> JSONResponse:
    """The purchase's answer in the shape of before (``credited``, ``balance``, ``transaction``; a pass's row)."""
    body: dict[str, Any] = {"purchase": view, "wallet": view["wallet"], "transaction": view.get("transaction")}
    if view["status"] == "pending":
        body["note"] = f"the payment is sent but not mined yet: poll {view['poll']} (credited once mined)"
        return JSONResponse(body, status_code=202, headers={"Location": view["poll"]})
    what = view.get("what") or {}
    if what.get("kind") == "pass":
        body["paid"] = view["amount"]
        body["pass"] = view.get("pass")
    else:
        body["credited"], body["balance"] = view["amount"], view.get("balance")
    return JSONResponse(body)


@router.post("/v1/credits/deposit", operation_id="deposit_credits")
async def deposit(host: HostDep, body: Annotated[dict[str, Any], Body(description="{tx_hash}")]
                  ) -> dict[str, Any]:
    """Credit a USDC transfer to the node's account to its sender (each transfer once)."""
    rail = _rail(host)
    tx_hash = body.get("tx_hash")
    if not isinstance(tx_hash, str) or len(tx_hash) != 66 or not tx_hash.startswith("0x"):
        raise UsageError("tx_hash must be a 0x-prefixed 32-byte transaction hash")
    credited = await run_in_threadpool(rail.deposit, tx_hash)
    return {"credited": [{"wallet": w, "amount": str(a), "new": n} for w, a, n in credited]}


@router.post("/v1/credits/refund", operation_id="refund_credits")
async def refund(host: HostDep) -> JSONResponse:
    """The signing wallet's unspent credits back on chain (what its unsettled calls hold stays)."""
    rail = _rail(host)
    wallet = await host.signed("credits-refund")
    amount, tx = await run_in_threadpool(rail.refund, wallet)
    return JSONResponse({"wallet": wallet, "refunded": str(amount), "transaction": tx,
                         "balance": str(await run_in_threadpool(rail.repo.balance, wallet))})
