"""/v1/court/{id}: attested requests escrowed on the AttestationCourt for the causal LMs this node serves (see
``proofmarket.intake.court``).

The consumer escrows the price on the court with a commitment to its generate request, then posts the request
here; the node generates, signs and commits the result on chain, and is paid once the challenge window closed.
The committed bundle is readable by the consumer (``X-Job-Token`` from the input answer), the admin, and the
validators the court lets read it (``canRead``: stake bonded before the commitment, still bonded, and drawn for the
request or voting on its challenge), with a read signature bound to this node, court, chain and request, at most a
minute old and used once (``proofmarket.validator.protocol``: ``X-Validator-Address``, ``X-Validator-Time``,
``X-Validator-Nonce``, ``X-Validator-Signature``). Validators must re-execute a result to judge it, so a court
request's prompt and output are shown to those validators: this is the attested tier's privacy terms. A node that
withholds a bundle from a validator is challenged for availability and must publish it on chain, where everyone
reads it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Header, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from proofmarket.api.routers.requests import EscrowRequestPublic
from proofmarket.api.security import CallerDep
from proofmarket.api.signed import UsedSignatures, used_signatures
from proofmarket.core.errors import ArtifactNotFound, CourtUnavailable
from proofmarket.intake.court import CourtService
from proofmarket.node.access import AccessTokens
from proofmarket.node.services import NodeServices
from proofmarket.validator.protocol import FUTURE_SKEW_S, READ_TTL_S, read_signer


def court_of(app: FastAPI) -> CourtService | None:
    """The app's court watcher, built and started by the app's lifespan (``app.py``: None when the watcher is off,
    no court is deployed, or the lifespan has not run)."""
    service: CourtService | None = getattr(app.state, "court", None)
    return service


router = APIRouter(prefix="/v1/court", tags=["court"])

RequestId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the AttestationCourt request id")]
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown_request; court_unavailable (no court on the node's chain, or the watcher is off)"},
    409: {"description": "request_closed"},
    422: {"description": "input_mismatch, invalid_input, prompt_too_long, max_tokens_over_cap"},
}


class CourtInput(BaseModel):
    input: dict[str, Any] = Field(description="the generate request committed to on chain: "
                                              "{prompt, max_tokens, temperature, seed}")


def _court(request: Request) -> CourtService:
    court = court_of(request.app)
    if court is None:
        raise CourtUnavailable("this node follows no AttestationCourt (none deployed on its chain, or "
                               "PROOFMARKET_ESCROW_WATCHER=off)")
    return court


@router.get("/{request_id}", operation_id="get_court_request", response_model=EscrowRequestPublic,
            responses=RESPONSES)
def get_court_request(request_id: RequestId, request: Request) -> EscrowRequestPublic:
    """A court request as this node sees it: seen, input_received, proving, fulfilled (committed: see
    ``settlement.court`` for committed, challenged, paid or slashed) or failed."""
    return EscrowRequestPublic.of(_court(request).get(request_id))


@router.post("/{request_id}/input", operation_id="post_court_input", status_code=202,
             response_model=EscrowRequestPublic, responses=RESPONSES)
def post_court_input(request_id: RequestId, body: Annotated[CourtInput, Body()],
                     request: Request) -> EscrowRequestPublic:
    """Post the generate request of a court request: it must open the on-chain commitment; the node then
    generates, signs and commits the result (poll ``GET /v1/court/{id}``). The answer carries
    ``access_token``: the ``X-Job-Token`` that reads the committed bundle at ``GET /v1/court/{id}/bundle``."""
    court = _court(request)
    answer = EscrowRequestPublic.of(court.post_input(request_id, body.input))
    tokens: AccessTokens = request.app.state.services.tokens
    answer.access_token = tokens.escrow(court.chain_id, court.address, request_id)
    return answer


@router.get("/{request_id}/bundle", operation_id="get_court_bundle", response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "the committed attested bundle"},
                       404: {"description": "artifact_not_found (not committed, or not readable by this caller)"}})
def get_court_bundle(request_id: RequestId, request: Request, caller: CallerDep,
                     x_validator_address: Annotated[str | None, Header()] = None,
                     x_validator_time: Annotated[int | None, Header()] = None,
                     x_validator_nonce: Annotated[str | None, Header()] = None,
                     x_validator_signature: Annotated[str | None, Header()] = None) -> Response:
    """The committed bundle of a court request (its sha256 is the digest committed on chain), for the
    consumer's token, the admin, or a staked validator's signature (see the module notice)."""
    court = _court(request)
    services: NodeServices = request.app.state.services
    row = court.repo.get(court.chain_id, court.address, request_id)
    committed = row is not None and row.status in ("confirming", "fulfilled") and row.bundle_cid is not None
    allowed = caller.admin or services.tokens.escrow_of(caller.token, court.chain_id, court.address) == request_id
    if committed and not allowed and x_validator_address and x_validator_time and x_validator_nonce \
            and x_validator_signature:
        allowed = _validator_may_read(court, used_signatures(request), request_id, x_validator_address,
                                      x_validator_time, x_validator_nonce, x_validator_signature)
    if not committed or not allowed or row is None or row.bundle_cid is None:
        raise ArtifactNotFound(f"no committed bundle for court request {request_id} readable with this request",
                               request_id=request_id)
    return Response(services.workspace.store.get(row.bundle_cid), media_type="application/json",
                    headers={"ETag": f'"{row.bundle_cid}"', "Cache-Control": "private, max-age=3600"})


def _validator_may_read(court: CourtService, used: UsedSignatures, request_id: int, address: str, timestamp: int,
                        nonce: str, signature: str) -> bool:
    """A read signature made for this node (the address that committed), court, chain and request, fresh and
    never used before, by a validator the court lets read it (``canRead``: stake bonded before the commitment and
    still bonded, and drawn for the request or voting on its challenge; a stake made to read and then unstaked
    reads nothing)."""
    signer = read_signer(court.chain_id, court.address, str(court.node.address), request_id, address, timestamp,
                         nonce, signature)
    if signer is None:
        return False
    if not court.court.can_read(request_id, signer):
        return False
    # once per signature on every node of this database, over restarts (the signature binds the request)
    return used.first_use((signer.lower(), nonce, f"court-read/{court.chain_id}/{request_id}"),
                          int(timestamp) + READ_TTL_S + FUTURE_SKEW_S + 1)
