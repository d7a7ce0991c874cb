"""/v1/models: the catalogue, one model's public description, and owners' uploads (compiled as a job)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from proofmarket.api.deps import IdempotencyKey, ServicesDep
from proofmarket.api.schemas import JobPublic, ModelList, ModelPublic
from proofmarket.api.security import AdminDep
from proofmarket.api.uploads import UPLOAD_SCHEMA, prepare_upload
from proofmarket.api.views import job_public, model_public, model_summary
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.node.services import NodeServices

router = APIRouter(prefix="/v1/models", tags=["models"])
log = logging.getLogger("proofmarket.models")
ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "unknown_model"}}


@router.get("", operation_id="list_models", response_model=ModelList)
def list_models(services: ServicesDep) -> ModelList:
    """The models this node serves, with their prices and privacy profiles."""
    prover = prover_profile(services)
    return ModelList(models=[model_summary(m, prover) for m in services.catalog.list()])


@router.get("/{model_id}", operation_id="get_model", response_model=ModelPublic, responses=ERRORS)
def get_model(model_id: str, services: ServicesDep) -> ModelPublic:
    """Price, privacy profile, input schema, commitments (ONNX sha256, vk digest) and verifier artifacts."""
    return model_public(services.catalog.get(model_id), prover_profile(services))


def prover_profile(services: NodeServices) -> dict[str, Any] | None:
    """The node's prover record and ERC-8004 scores, when a market is deployed (None when the chain is away)."""
    listings = services.catalog.listings
    if listings is None:
        return None
    try:
        return listings.prover_profile()
    except ProofMarketError as exc:
        log.warning("no prover profile: %s", exc.message)
        return None


@router.post("", operation_id="upload_model", status_code=202, response_model=JobPublic, dependencies=[AdminDep],
             openapi_extra=UPLOAD_SCHEMA,
             responses={401: {"description": "unauthorized"}, 413: {"description": "body_too_large"},
                        422: {"description": "invalid_model, unsupported_operator, invalid_input"}})
async def upload_model(request: Request, services: ServicesDep, idempotency_key: IdempotencyKey = None
                       ) -> JSONResponse:
    """Upload an ONNX model with sample inputs and a price (admin bearer token). Answers 202 with the
    compile job; the model is served once the job is ``proved``."""
    settings = services.settings
    try:
        form = await request.form(max_files=2, max_fields=8, max_part_size=settings.max_request_bytes)
    except ProofMarketError:  # body_too_large
        raise
    except Exception as exc:  # multipart parse errors (Starlette's own HTTP 400)
        raise UsageError(f"the upload is not a valid multipart form: {getattr(exc, 'detail', exc)}") from exc
    try:
        spec, digest = await run_in_threadpool(prepare_upload, form, settings, services.workspace.store)
    finally:
        await form.close()
    job, _ = services.jobs.submit_compile(spec, digest, key=idempotency_key)
    return JSONResponse(job_public(job, services.tokens.job(job.id)).model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/v1/jobs/{job.id}"})
