"""/v1/proofs/{cid}: a stored proof bundle, byte for byte (its CID is the hash of these bytes)."""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import Response

from proofmarket.api.deps import ServicesDep
from proofmarket.errors import ArtifactNotFound
from proofmarket.store import validate_cid
from proofmarket.zk.bundle import BUNDLE_FORMAT

router = APIRouter(prefix="/v1/proofs", tags=["proofs"])
MAX_BUNDLE_BYTES = 16 * 1024 * 1024


@router.get("/{cid:path}", operation_id="get_proof", response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "the proof bundle"},
                       400: {"description": "invalid_cid"}, 404: {"description": "artifact_not_found"}})
def get_proof(cid: str, services: ServicesDep) -> Response:
    """The proof bundle stored under ``cid`` (proofmarket/proof-bundle v1)."""
    store = services.workspace.store
    if not store.has(validate_cid(cid)):
        raise ArtifactNotFound(f"no proof bundle with CID {cid} on this node", cid=cid)
    if store.size(cid) > MAX_BUNDLE_BYTES or not _is_bundle(store.get(cid)):
        raise ArtifactNotFound(f"{cid} is stored here but is not a proof bundle", cid=cid)
    return Response(store.get(cid), media_type="application/json", headers=_immutable(cid))


def _is_bundle(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("format") == BUNDLE_FORMAT


def _immutable(cid: str) -> dict[str, str]:
    return {"ETag": f'"{cid}"', "Cache-Control": "public, max-age=31536000, immutable"}
