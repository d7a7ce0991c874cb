"""The book's operator routes (admin token): pay out now, reconcile with the chain.

    POST /v1/payouts/run            pay every payee what the book owes it now (``payments/payouts.py``): the paid,
                                    confirmed, voided and waiting payouts; ``ran: false`` while another node of this
                                    database holds the settler's lease
    GET  /v1/ledger/check?from_block=N   the book against its rules and the chain (``payments/reconcile.py``): every
                                    difference named; ``ok`` when there is none
Owners read their earnings at ``/v1/earnings`` (signed); nothing here moves money on an owner's word.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from proofmarket.api.deps import ServicesDep
from proofmarket.api.security import AdminDep
from proofmarket.core.errors import CreditsUnavailable
from proofmarket.node.services import NodeServices
from proofmarket.payments.settler import Money

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
