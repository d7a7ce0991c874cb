"""/v1/models: the catalogue, one model's public description, and owners' uploads (compiled as a job)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from proofmarket.api.deps import IdempotencyKey, ServicesDep
from proofmarket.api.schemas import JobPublic, ModelList, ModelPublic, ModelSummary, ModelVersions, ReviewBody
from proofmarket.api.security import AdminDep, IsAdminDep
from proofmarket.api.signed import is_signed, node_address, signed_address
from proofmarket.api.uploads import MAX_DATA_FILES, UPLOAD_SCHEMA, Uploader, prepare_upload
from proofmarket.api.views import job_public, model_public, model_summary
from proofmarket.core.errors import (
    Forbidden,
    MarketUnavailable,
    ModelInactive,
    ProofMarketError,
    Unauthorized,
    UnknownModel,
    UsageError,
)
from proofmarket.core.listing_request import DOMAIN, TYPES
from proofmarket.core.units import parse_usdc
from proofmarket.db import ModelStatus
from proofmarket.marketplace.analytics import MAX_DAYS, model_stats, public_stats, usage_counts
from proofmarket.marketplace.entries import TASKS
from proofmarket.marketplace.search import MAX_LIMIT, search
from proofmarket.marketplace.search import Query as SearchQuery
from proofmarket.marketplace.submissions import Submissions
from proofmarket.node.services import NodeServices

router = APIRouter(prefix="/v1/models", tags=["models"])
log = logging.getLogger("proofmarket.models")
ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "unknown_model"}}


@router.get("", operation_id="list_models", response_model=ModelList,
            responses={400: {"description": "bad_request, invalid_cursor"}})
def list_models(services: ServicesDep,
                q: Annotated[str | None, Query(max_length=200, description="words the name, description, "
                                                                           "tags or id contain")] = None,
                mode: Annotated[Literal["proven", "attested"] | None, Query()] = None,
                task: Annotated[str | None, Query(max_length=32, description=f"one of {', '.join(TASKS)}")] = None,
                tag: Annotated[list[str] | None, Query(description="every tag given (repeat tag=)")] = None,
                max_price: Annotated[str | None, Query(max_length=40, description="USDC per call, e.g. 0.01")] = None,
                min_reputation: Annotated[float | None, Query(ge=0, le=100, description="the prover's ERC-8004 "
                                                                                      "reputation average")] = None,
                owner: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{40}$")] = None,
                sort: Annotated[Literal["newest", "oldest", "price", "-price", "name", "popular"], Query(
                    description="popular: most calls over the last 30 days first")] = "newest",
                limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
                cursor: Annotated[str | None, Query(max_length=200)] = None,
                status: Annotated[Literal["active", "pending", "rejected", "any"], Query(
                    description="active: sold (default); pending, rejected: owners' listings under review")
                ] = "active") -> ModelList:
    """The listings this node sells, searched: free text, filters, a sort, and pages (``next_cursor``)."""
    prover = prover_profile(services)
    query = SearchQuery(q=q or None, mode=mode, task=task, tags=tuple(t.lower() for t in tag or ()),
                        max_price_atomic=None if max_price is None else _atomic(max_price),
                        min_reputation=min_reputation, owner=owner, sort=sort, limit=limit)
    usage = usage_counts(services.db, services.settings.owners.stats_min_calls)
    page = search(services.catalog.list(None if status == "any" else status), query, cursor, prover, usage)
    return ModelList(models=[model_summary(m, prover, usage.get(m.row.id)) for m in page.models], total=page.total,
                     next_cursor=page.next_cursor)


@router.get("/latest", operation_id="latest_model", response_model=ModelVersions, responses=ERRORS)
def latest_model(services: ServicesDep, owner: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$")],
                 name: Annotated[str, Query(min_length=1, max_length=200)]) -> ModelVersions:
    """The latest version of OWNER/NAME: the newest sold listing on the version line of the owner's listings of
    that name (a client that follows a model by name asks this, and says which id it used)."""
    named = [r for r in services.catalog.repo.by_owner(owner) if r.name == name]
    if not named:
        raise UnknownModel(f"{owner} lists no model named {name!r} on this node", owner=owner, name=name)
    newest = max(named, key=lambda r: (r.created_at, r.id))
    return versions_of(services, newest.id)


@router.get("/{model_id}", operation_id="get_model", response_model=ModelPublic, responses=ERRORS)
def get_model(model_id: str, services: ServicesDep) -> ModelPublic:
    """Price, privacy profile, input schema, commitments (ONNX sha256, vk digest) and verifier artifacts."""
    return model_public(services.catalog.get(model_id), prover_profile(services))


@router.get("/{model_id}/versions", operation_id="model_versions", response_model=ModelVersions, responses=ERRORS)
def model_versions(model_id: str, services: ServicesDep) -> ModelVersions:
    """The line of versions this listing is on, oldest first, and its latest sold version."""
    return versions_of(services, model_id)


@router.get("/{model_id}/stats", operation_id="model_stats",
            responses={**ERRORS, 401: {"description": "unauthorized (a signature that is not the owner's)"}})
def model_stats_route(model_id: str, request: Request, services: ServicesDep, admin: IsAdminDep,
                      days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="the window, in UTC days")] = 30
                      ) -> dict[str, Any]:
    """A model's calls (by status and rail), errors by code, latency and run time p50/p95, tokens and revenue,
    with every day of the window. Public: counts and sums only, and every bucket of fewer than
    ``PROOFMARKET_STATS_MIN_CALLS`` calls hidden (a window, a day, a rail, an error code). Signed by the model's
    owner (Sign-In with Ethereum, purpose ``stats``) or read with the admin token: every number."""
    row = services.catalog.repo.get(model_id)
    if row is None:
        raise UnknownModel(f"this node serves no model with id {model_id}", model_id=model_id)
    doc = model_stats(services.db, model_id, days, node=node_address(services))
    if is_signed(request):
        if signed_address(request, "stats") != (row.owner or "").lower():
            raise Unauthorized("a model's full stats are signed by its owner")
        return doc
    return doc if admin else public_stats(doc, services.settings.owners.stats_min_calls)


@router.get("/{model_id}/registration", operation_id="registration_plan",
            responses={**ERRORS, 404: {"description": "unknown_model, market_unavailable"}})
def registration_plan(model_id: str, services: ServicesDep,
                      owner: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$")],
                      verifier: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{40}$")] = None
                      ) -> dict[str, Any]:
    """The next transaction the owner's wallet sends to list this model on the registry under its own address:
    ``deploy_verifier`` (creation code), then ``register`` (calldata for the registry, given the deployed
    verifier), then ``done``. Only the listing's owner on this node is answered."""
    row = services.catalog.repo.get(model_id)
    if row is None:
        raise UnknownModel(f"this node serves no model with id {model_id}", model_id=model_id)
    if (row.owner or "").lower() != owner.lower():
        raise Forbidden(f"{owner} is not the owner of model {model_id} on this node", model_id=model_id)
    listings = services.catalog.listings
    if listings is None:
        raise MarketUnavailable("this node sells on no market: there is no registry to list on")
    plan: dict[str, Any] = listings.market.registration_plan(model_id, owner, row.price_atomic, verifier=verifier,
                                                             metadata_cid=row.catalog_cid)
    return plan


def versions_of(services: NodeServices, model_id: str) -> ModelVersions:
    line = services.catalog.repo.versions(model_id)
    if not line:
        raise UnknownModel(f"this node serves no model with id {model_id}", model_id=model_id)
    prover = prover_profile(services)
    served = [services.catalog.get(r.id) for r in line]
    sold = [m for m in served if m.row.status == ModelStatus.ACTIVE and m.active]
    if not sold:
        raise ModelInactive(f"no version of {model_id}'s line is sold on this node", model_id=model_id)
    return ModelVersions(model_id=model_id, latest=sold[-1].row.id,
                         versions=[model_summary(m, prover) for m in served])


def _atomic(price: str) -> int:
    try:
        return parse_usdc(price, what="max_price")
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"max_price must be a USDC amount such as 0.01, not {price!r}") from exc


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


@router.post("", operation_id="upload_model", status_code=202, response_model=JobPublic,
             openapi_extra=UPLOAD_SCHEMA,
             responses={401: {"description": "unauthorized, listing_signature_invalid"},
                        403: {"description": "listing_not_allowed, owner_quota_exceeded"},
                        409: {"description": "listing_replayed"},
                        413: {"description": "body_too_large, model_too_large"},
                        422: {"description": "invalid_model, unsupported_operator, invalid_input, invalid_metadata, "
                                            "invalid_supersedes"}})
async def upload_model(request: Request, services: ServicesDep, admin: IsAdminDep,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Upload an ONNX model with sample inputs, a price and its catalogue entry: as the admin (bearer token), or
    as an owner with a listing request signed by the owner's wallet (EIP-712, see ``GET /v1/listing-policy``),
    under the node's policy and per-owner quotas. Answers 202 with the compile job (its ``access_token`` follows
    it); the model is served once the job is ``proved`` (an owner's listing under review: once approved)."""
    settings = services.settings
    try:
        form = await request.form(max_files=3 + MAX_DATA_FILES, max_fields=16,
                                  max_part_size=settings.limits.max_request_bytes)
    except ProofMarketError:  # body_too_large
        raise
    except Exception as exc:  # multipart parse errors (Starlette's own HTTP 400)
        raise UsageError(f"the upload is not a valid multipart form: {getattr(exc, 'detail', exc)}") from exc
    submissions = Submissions(settings, services.db, services.chain_client)
    who = Uploader(admin=admin, submissions=submissions, node=node_address(services), models=services.catalog.repo,
                   client=request.client.host if request.client else None)
    try:
        spec, digest, signed = await run_in_threadpool(prepare_upload, form, settings, services.workspace.store, who)
    finally:
        await form.close()
    try:
        job, _ = services.calls.submit_compile(spec, digest, key=idempotency_key)
    except BaseException:
        if signed is not None:
            await run_in_threadpool(submissions.unreserve, signed)
        raise
    if signed is not None:
        await run_in_threadpool(submissions.attach, signed, job.id)
    return JSONResponse(job_public(job, services.tokens.job(job.id)).model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/v1/jobs/{job.id}"})


@router.post("/{model_id}/review", operation_id="review_model", response_model=ModelSummary, dependencies=[AdminDep],
             responses={**ERRORS, 401: {"description": "unauthorized"}})
def review_model(model_id: str, services: ServicesDep,
                 body: Annotated[ReviewBody, Body(description="approve or reject, with a reason")]) -> ModelSummary:
    """The operator's review of an owner's listing (admin): approve (sold from now on) or reject with a reason
    (the owner sees it); an approved listing can be rejected later, and a rejected one approved."""
    status = ModelStatus.ACTIVE if body.decision == "approve" else ModelStatus.REJECTED
    if services.catalog.repo.review(model_id, status, body.reason) is None:
        raise UnknownModel(f"this node serves no model with id {model_id}", model_id=model_id)
    log.info("model %s reviewed: %s (%s)", model_id, status, body.reason or "no reason")
    return model_summary(services.catalog.get(model_id), prover_profile(services))


policy_router = APIRouter(tags=["models"])


@policy_router.get("/v1/listing-policy", operation_id="listing_policy")
def listing_policy(services: ServicesDep) -> dict[str, Any]:
    """Who may list here without the admin token, the per-owner quotas, and what an owner signs (the EIP-712
    ``ListingRequest``: its domain, types and the node address it names)."""
    return {**Submissions(services.settings, services.db).describe(), "node": node_address(services),
            "eip712": {"domain": DOMAIN, "types": TYPES, "primaryType": "ListingRequest"},
            "tasks": list(TASKS)}
