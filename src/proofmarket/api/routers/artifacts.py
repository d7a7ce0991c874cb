"""/v1/artifacts/{cid}: the public artifacts of the models this node serves, streamed, by allowlist.

What is public depends on the model's privacy profile (``ModelManifest.public_cids``): the manifest,
settings, vk, SRS and verifier (Solidity source, ABI, bytecode) of every model; the ONNX, circuit ONNX and
compiled circuit only when the weights are public (``public``, ``private-input``), never for ``private``
(hashed weights). The proving key is never public: it is large and, for fixed weights, carries them;
workers that need it fetch it with the admin token, which opens every stored artifact. Anything else
(another model's files, proof bundles, uploads) is answered as if it did not exist (404).

The CID is validated before it becomes a path (``validate_cid``): only ``bafkrei`` + 52 base32 characters,
so nothing can walk out of the store. The route takes the rest of the path so that traversal attempts
(``..%2F..``) reach the check and get 400 ``invalid_cid`` rather than slipping past it.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import FileResponse

from proofmarket.api.deps import ServicesDep
from proofmarket.api.security import IsAdminDep
from proofmarket.core.errors import ArtifactNotFound, ProofMarketError
from proofmarket.node.services import NodeServices
from proofmarket.store import validate_cid

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
log = logging.getLogger(__name__)


@router.get("/{cid:path}", operation_id="get_artifact", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the artifact's bytes"},
                       400: {"description": "invalid_cid"},
                       404: {"description": "artifact_not_found (also: not public; the admin token opens all)"}})
def get_artifact(cid: str, services: ServicesDep, admin: IsAdminDep) -> FileResponse:
    """A public artifact of a served model (manifest, settings, vk, SRS, verifier; the ONNX and circuit only
    when the weights are public). The admin bearer token opens every stored artifact (proving keys too)."""
    store = services.workspace.store
    validate_cid(cid)
    if not store.has(cid) or not (admin or cid in public_artifacts(services)):
        raise ArtifactNotFound(f"no public artifact with CID {cid} on this node", cid=cid)
    cache = "private, no-store" if admin else "public, max-age=31536000, immutable"
    return FileResponse(store.path(cid), media_type="application/octet-stream", filename=cid,
                        headers={"ETag": f'"{cid}"', "Cache-Control": cache, "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'none'; sandbox"})


def public_artifacts(services: NodeServices) -> set[str]:
    """The CIDs anyone may fetch: each served model's manifest and the artifacts its profile makes public."""
    public: set[str] = set()
    for row in services.catalog.repo.list():
        try:
            manifest = services.catalog.get(row.id).manifest
        except ProofMarketError:  # a broken listing opens nothing
            log.warning("model %s has no readable manifest; none of its artifacts is served", row.id)
            continue
        public.add(row.id)
        public.update(manifest.public_cids)
    return public
