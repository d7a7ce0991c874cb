"""The book's operator routes (admin token): pay out now, reconcile with the chain.

    POST /v1/payouts/run            pay every payee what the book owes it now (``payments/payouts.py``): the paid,
                                    confirmed, voided and waiting payouts; ``ran: false`` while another node of this
                                    database holds the settler's lease
    GET  /v1/ledger/check?from_block=N   the book against its rules and the chain, both ways (``payments/reconcile.py``,
                                    ``payments/chain_tail.py``): every difference named; ``ok`` when there is none
    POST /v1/ledger/replay              book what the node's account sent on chain that the book does not hold (a
                                    restore from an older backup): the node pays nothing until it is booked
    GET  /v1/ledger/unknown             held payouts and credits refunds whose outcome no machine may decide
    POST /v1/ledger/unknown/{ref}       the operator says which it was: {"paid_tx": "0x..."} (checked on chain, then
                                    captured) or {"not_sent": "reason"} (voided) (``payments/unknown.py``)
    POST /v1/ledger/write-off/{ref}     {"reason": "..."}: void a channel charge the node can no longer collect (its
                                    channel refused by the chain, or older than a sweep interval)
Owners read their earnings at ``/v1/earnings`` (signed); nothing here moves money on an owner's word.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.concurrency import run_in_threadpool

from proofmarket.api.deps import ServicesDep
from proofmarket.api.security import AdminDep
from proofmarket.core.errors import CreditsUnavailable, UsageError
from proofmarket.node.services import NodeServices
from proofmarket.payments.settler import Money
from proofmarket.payments.unknown import resolve_unknown, unknown_outcomes

router = APIRouter(tags=["ledger"])


def _money(services: NodeServices) -> Money:
    if services.money is None:
        raise CreditsUnavailable("this node keeps no book")
    return services.money


@router.post("/v1/payouts/run", operation_id="run_payouts", dependencies=[AdminDep])
async def run_payouts(services: ServicesDep) -> dict[str, Any]:
    """Pay every payee what the book owes it, now (the operator; the settler also does it on a schedule)."""
    money = _money(services)
    if money.settler is None:
        raise CreditsUnavailable("this node takes no payments: there is nothing to pay out")
    done = await run_in_threadpool(money.settler.pay_now)
    return {"ran": done is not None, **(done or {})}


@router.get("/v1/ledger/check", operation_id="check_ledger", dependencies=[AdminDep])
async def check_ledger(services: ServicesDep,
                       from_block: Annotated[int, Query(ge=0, description="check transactions from this block")] = 0
                       ) -> dict[str, Any]:
    """The book against its own rules and against the chain: every difference, named."""
    report = await run_in_threadpool(_money(services).check, from_block)
    return report.to_json()


@router.post("/v1/ledger/replay", operation_id="replay_ledger", dependencies=[AdminDep])
async def replay_ledger(services: ServicesDep) -> dict[str, Any]:
    """Book every token transfer the node's account sent on chain that the book does not hold, as what the book
    owed its recipient (payee shares, then credits; the rest from the node's own funds): ``booked``, the
    ``incoming`` transfers it does not hold (listed, never booked here) and what is still ``held``."""
    return await run_in_threadpool(_money(services).replay)


@router.get("/v1/ledger/unknown", operation_id="list_unknown_outcomes", dependencies=[AdminDep])
async def list_unknown(services: ServicesDep) -> dict[str, Any]:
    """Held payouts and credits refunds whose transaction may have left with no hash known: the operator settles
    each from the chain (``POST /v1/ledger/unknown/{ref}``)."""
    return {"unknown": await run_in_threadpool(unknown_outcomes, _money(services).book)}


@router.post("/v1/ledger/unknown/{ref:path}", operation_id="resolve_unknown_outcome", dependencies=[AdminDep])
async def resolve(ref: str, services: ServicesDep,
                  body: Annotated[dict[str, Any], Body(description='{"paid_tx": "0x..."} or {"not_sent": "reason"}')]
                  ) -> dict[str, Any]:
    """Capture a held transfer with the transaction that paid it (checked on chain: mined, successful, a USDC
    transfer from the node to the payee of its amount), or void it when it was never sent."""
    money = _money(services)
    paid, not_sent = body.get("paid_tx"), body.get("not_sent")
    if paid is not None and not isinstance(paid, str) or not_sent is not None and not isinstance(not_sent, str):
        raise UsageError('the body is {"paid_tx": "0x..."} or {"not_sent": "reason"}')
    p = money.payouts
    return await run_in_threadpool(lambda: resolve_unknown(
        money.book, ref, paid_tx=paid, not_sent=not_sent, client=p.client if p else None,
        usdc=p.usdc if p else None, sender=p.sender.address if p else None))


@router.post("/v1/ledger/write-off/{ref:path}", operation_id="write_off_charge", dependencies=[AdminDep])
async def write_off(ref: str, services: ServicesDep,
                    body: Annotated[dict[str, Any], Body(description='{"reason": "why it cannot be collected"}')]
                    ) -> dict[str, Any]:
    """Write off a channel charge the node can no longer collect (one balanced entry: its hold is voided, nothing is
    owed for it); only one of a channel the chain refused, or older than a sweep interval."""
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError('the body is {"reason": "why it cannot be collected"}')
    money = _money(services)
    return await run_in_threadpool(money.write_off, ref, reason.strip()[:200])
