"""/v1/requests/{id}: on-chain escrow requests this node fulfils (see ``proofmarket.intake.escrow``).

The consumer escrows the price on chain with a commitment to its input (``requestInference``), then
posts the input (and, for a hashed-input model, the salt) here. The node checks that it opens the
on-chain commitment (else 422 ``input_mismatch``, and nothing is proved), proves, and calls ``fulfill``.
The escrow watcher runs in a background thread with the app (``PROOFMARKET_ESCROW_WATCHER``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request
from pydantic import BaseModel, Field

from proofmarket.api.errors import public_message
from proofmarket.core.errors import EscrowUnavailable, Unauthorized
from proofmarket.db import EscrowRequestRow
from proofmarket.intake.escrow import EscrowService
from proofmarket.node.access import AccessTokens
from proofmarket.systems.ezkl.profile import SALT_BITS, SALT_ELEMENTS


def escrow_of(app: FastAPI) -> EscrowService | None:
    """The app's escrow watcher, built and started by the app's lifespan (``app.py``: None when the watcher is off,
    no market is deployed, or the lifespan has not run)."""
    service: EscrowService | None = getattr(app.state, "escrow", None)
    return service


router = APIRouter(prefix="/v1/requests", tags=["escrow"])

RequestId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the on-chain request id")]
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown_request; escrow_unavailable (no market on the node's chain, or the watcher is off)"},
    409: {"description": "request_closed"},
    422: {"description": "input_mismatch, invalid_input, input_shape, input_not_finite"},
}


class EscrowInput(BaseModel):
    input: dict[str, Any] = Field(description="the input document committed to on chain (as for infer)")
    salt: list[Annotated[int, Field(ge=0, lt=1 << SALT_BITS)]] | None = Field(
        default=None, max_length=SALT_ELEMENTS, description="the commitment's salt (hashed-input models only)")


class EscrowRequestPublic(BaseModel):
    request_id: int
    chain_id: int
    market: str
    model_id: str
    status: str = Field(description="seen, input_received, proving, fulfilled, failed")
    commitment: str
    consumer: str
    amount_atomic: str
    deadline: int
    request_tx: str | None
    bundle_cid: str | None
    fulfil_tx: str | None
    settlement: dict[str, Any] | None
    error: dict[str, str] | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    access_token: str | None = Field(default=None, description=(
        "in the answer to the input only: send it as X-Job-Token to read the request's proof bundle"))

    @classmethod
    def of(cls, row: EscrowRequestRow) -> EscrowRequestPublic:
        error = {"code": row.error_code, "message": public_message(row.error_code, row.error_message)} \
            if row.error_code else None
        return cls(request_id=row.request_id, chain_id=row.chain_id, market=row.market, model_id=row.model_id,
                   status=row.status, commitment=row.commitment, consumer=row.consumer,
                   amount_atomic=str(row.amount), deadline=row.deadline, request_tx=row.request_tx,
                   # the bundle is shown once its fulfilment is mined, not while it could still be copied
                   bundle_cid=row.bundle_cid if row.status == "fulfilled" else None, fulfil_tx=row.fulfil_tx,
                   settlement=row.public_settlement(), error=error,
                   attempts=row.attempts, created_at=row.created_at, updated_at=row.updated_at)


def _escrow(request: Request) -> EscrowService:
    escrow = escrow_of(request.app)
    if escrow is None:
        raise EscrowUnavailable("this node follows no escrow market (no market deployed on its chain, or "
                                "PROOFMARKET_ESCROW_WATCHER=off)")
    return escrow


class EscrowRequestPage(BaseModel):
    items: list[EscrowRequestPublic]
    next_offset: int | None


@router.get("", operation_id="list_requests", response_model=EscrowRequestPage,
            responses={401: {"description": "unauthorized: no valid X-Address signature for this consumer"},
                       404: {"description": "escrow_unavailable"}})
def list_requests(request: Request,
                  consumer: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$", description="the consumer")],
                  limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> EscrowRequestPage:
    """The escrow requests (InferenceMarket) and court requests (AttestationCourt, ``market`` names which) of
    ``consumer`` this node has seen, newest first, each with its ``access_token``: for a request signed by that
    address (``X-Address`` headers, see ``api/signed.py``)."""
    from proofmarket.api.signed import signed_address

    escrow = _escrow(request)
    if signed_address(request, "history") != consumer.lower():
        raise Unauthorized("the address signature is not the consumer's")
    tokens: AccessTokens = request.app.state.services.tokens
    rows = escrow.repo.by_consumer(escrow.chain_id, consumer, limit + 1, offset)
    items = []
    for row in rows[:limit]:
        item = EscrowRequestPublic.of(row)
        item.access_token = tokens.escrow(row.chain_id, row.market, row.request_id)
        items.append(item)
    return EscrowRequestPage(items=items, next_offset=offset + limit if len(rows) > limit else None)


@router.get("/{request_id}", operation_id="get_request", response_model=EscrowRequestPublic, responses=RESPONSES)
def get_request(request_id: RequestId, request: Request) -> EscrowRequestPublic:
    """An escrow request as this node sees it: seen, input_received, proving, fulfilled or failed."""
    return EscrowRequestPublic.of(_escrow(request).get(request_id))


@router.post("/{request_id}/input", operation_id="post_request_input", status_code=202,
             response_model=EscrowRequestPublic, responses=RESPONSES)
def post_request_input(request_id: RequestId, body: Annotated[EscrowInput, Body()],
                       request: Request) -> EscrowRequestPublic:
    """Post the input of an on-chain request: it must open the on-chain commitment; the node then proves
    it and fulfils the request (poll ``GET /v1/requests/{id}``). The answer carries ``access_token``: the
    ``X-Job-Token`` that reads the request's proof bundle at ``GET /v1/proofs/{cid}``."""
    escrow = _escrow(request)
    answer = EscrowRequestPublic.of(escrow.post_input(request_id, body.input, body.salt))
    tokens: AccessTokens = request.app.state.services.tokens
    answer.access_token = tokens.escrow(escrow.chain_id, escrow.address, request_id)
    return answer
