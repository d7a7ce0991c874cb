"""/v1/artifacts/{cid}: any stored artifact (manifest, settings, keys, SRS, verifier), streamed.

The CID is validated before it becomes a path (``validate_cid``): only ``bafkrei`` + 52 base32 characters,
so nothing can walk out of the store. The route takes the rest of the path so that traversal attempts
(``..%2F..``) reach the check and get 400 ``invalid_cid`` rather than slipping past it.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from proofmarket.api.deps import ServicesDep
from proofmarket.errors import ArtifactNotFound
from proofmarket.store import validate_cid

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


@router.get("/{cid:path}", operation_id="get_artifact", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the artifact's bytes"},
                       400: {"description": "invalid_cid"}, 404: {"description": "artifact_not_found"}})
def get_artifact(cid: str, services: ServicesDep) -> FileResponse:
    """The stored bytes of ``cid`` (proving keys included: they are public, only large)."""
    store = services.workspace.store
    if not store.has(validate_cid(cid)):
        raise ArtifactNotFound(f"no artifact with CID {cid} on this node", cid=cid)
    path = store.path(cid)
    return FileResponse(path, media_type="application/octet-stream", filename=cid,
                        headers={"ETag": f'"{cid}"', "Cache-Control": "public, max-age=31536000, immutable"})
