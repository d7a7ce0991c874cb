"""/v1/proofs/{cid}: a stored proof bundle, byte for byte (its CID is the hash of these bytes), to its owner.

A bundle is served to the holder of the access token (``X-Job-Token``) of the job that produced it (its
bundle, or its paid bundle once settled), of the escrow request it fulfils, or to the admin. Any other
request is answered as if the bundle did not exist (404 ``artifact_not_found``).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from proofmarket.api.deps import ServicesDep
from proofmarket.api.routers.requests import escrow_of
from proofmarket.api.security import Caller, CallerDep
from proofmarket.core import jsonlimits
from proofmarket.core.errors import ArtifactNotFound, JsonTooDeep, JsonTooLarge
from proofmarket.node.services import NodeServices
from proofmarket.payments.tickets import Settlement
from proofmarket.store import validate_cid
from proofmarket.systems.documents import BUNDLE_FORMAT

router = APIRouter(prefix="/v1/proofs", tags=["proofs"])
MAX_BUNDLE_BYTES = 16 * 1024 * 1024


@router.get("/{cid:path}", operation_id="get_proof", response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "the proof bundle"},
                       400: {"description": "invalid_cid"},
                       404: {"description": "artifact_not_found (also: no valid X-Job-Token for it)"}})
def get_proof(cid: str, request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    """The proof bundle stored under ``cid`` (proofmarket/proof-bundle v1), for the ``X-Job-Token`` of its job."""
    store = services.workspace.store
    validate_cid(cid)
    if not store.has(cid) or not _may_read(services, request, caller, cid):
        raise ArtifactNotFound(f"no proof bundle with CID {cid} readable with this request (send the "
                               "access_token of its job as X-Job-Token)", cid=cid)
    if store.size(cid) > MAX_BUNDLE_BYTES or not _is_bundle(store.get(cid)):
        raise ArtifactNotFound(f"{cid} is stored here but is not a proof bundle", cid=cid)
    return Response(store.get(cid), media_type="application/json", headers=_private(cid))


def _may_read(services: NodeServices, request: Request, caller: Caller, cid: str) -> bool:
    if caller.admin:
        return True
    job_id = services.tokens.job_of(caller.token)
    if job_id is not None:
        job = services.calls.repo.get(job_id)
        if job is None or not job.result_visible:
            return False
        payment = Settlement.from_json(job.settlement).payment or {}
        return cid in (job.bundle_cid, payment.get("paid_bundle_cid"))
    escrow = escrow_of(request.app) if caller.token else None
    if escrow is None:
        return False
    request_id = services.tokens.escrow_of(caller.token, escrow.chain_id, escrow.address)
    row = escrow.repo.get(escrow.chain_id, escrow.address, request_id) if request_id is not None else None
    return row is not None and row.bundle_cid == cid


def _is_bundle(data: bytes) -> bool:
    try:
        doc = jsonlimits.loads(data, what="the artifact")
    except (UnicodeDecodeError, json.JSONDecodeError, JsonTooDeep, JsonTooLarge):
        return False
    return isinstance(doc, dict) and doc.get("format") == BUNDLE_FORMAT


def _private(cid: str) -> dict[str, str]:
    """Immutable, but for its owner only: no shared cache may keep it."""
    return {"ETag": f'"{cid}"', "Cache-Control": "private, max-age=31536000, immutable"}
