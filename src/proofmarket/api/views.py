"""Rows and manifests turned into API schemas."""

from __future__ import annotations

from typing import Any, cast

from proofmarket.api.errors import public_message
from proofmarket.api.schemas import (
    InferResult,
    JobErrorPublic,
    JobLinks,
    JobPublic,
    JobResult,
    ModelLinks,
    ModelPublic,
    ModelSummary,
    Price,
    ProverProfile,
    RegistryListing,
)
from proofmarket.calls.service import call_answer
from proofmarket.core.errors import ProofMarketError, from_code
from proofmarket.db import CallKind, CallRow, CallStatus
from proofmarket.marketplace.catalog import ServedModel
from proofmarket.payments.tickets import Settlement
from proofmarket.store import ArtifactStore
from proofmarket.systems import guarantee, spec, spec_of, system_of


def model_links(model_id: str, route: str = "infer") -> ModelLinks:
    if route == "generate":
        return ModelLinks(self=f"/v1/models/{model_id}", generate=f"/v1/models/{model_id}/generate")
    return ModelLinks(self=f"/v1/models/{model_id}", infer=f"/v1/models/{model_id}/infer")


def model_summary(model: ServedModel, prover: dict[str, Any] | None = None, calls_30d: int | None = None
                  ) -> ModelSummary:
    row, m = model.row, model.manifest
    return ModelSummary(id=row.id, name=row.name, mode=model.mode,
                        price=Price.of(model.price_atomic), privacy=m.privacy["name"], owner=model.owner,
                        active=model.active, created_at=row.created_at,
                        links=model_links(row.id, spec_of(m).route(m)),
                        registry=registry_listing(model), prover=ProverProfile(**prover) if prover else None,
                        status=cast(Any, row.status), review_reason=row.review_reason, catalog=row.catalog,
                        catalog_cid=row.catalog_cid, supersedes=row.supersedes,
                        description=str((row.catalog or {}).get("description") or ""),
                        task=(row.catalog or {}).get("task"), tags=list((row.catalog or {}).get("tags") or []),
                        license=(row.catalog or {}).get("license"), calls_30d=calls_30d)


def registry_listing(model: ServedModel) -> RegistryListing | None:
    return None if model.listing is None else RegistryListing(**model.listing.to_json())


def model_public(model: ServedModel, prover: dict[str, Any] | None = None) -> ModelPublic:
    """A model's public document: the summary, its system's guarantee and the system's own fields."""
    m = model.manifest
    system = spec_of(m)
    fields = system.public_fields(m)
    if "verifier" in fields:  # the verifier contract the registry listing names, when the model is listed
        fields["verifier"] = {**fields["verifier"],
                              "address": model.listing.verifier if model.listed and model.listing else None}
    return ModelPublic(**model_summary(model, prover).model_dump(), guarantee=system.guarantee, **fields)


def job_public(job: CallRow, access_token: str | None = None, store: ArtifactStore | None = None) -> JobPublic:
    """A job as its token holder (or the admin) sees it; ``access_token`` only in the answer that created it;
    ``store``: read a delivered call's bundle for its ``answer`` (calls whose system answers more than an output)."""
    error = JobErrorPublic(code=job.error_code, message=public_message(job.error_code, job.error_message)) \
        if job.error_code else None
    return JobPublic(id=job.id, kind=job.kind, status=job.status, model_id=job.model_id,  # type: ignore[arg-type]
                     system=job.system, rail=job.rail,
                     created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
                     attempts=job.attempts, error=error, result=_job_result(job, store), links=_job_links(job),
                     progress=(job.result or {}).get("progress") if job.status == "running" else None,
                     request_id=job.request_id,
                     access_token=access_token)


def infer_result(job: CallRow, bundle: dict[str, Any], access_token: str) -> InferResult:
    result, settlement = job.result or {}, Settlement.from_json(job.settlement)
    assert job.model_id is not None and job.bundle_cid is not None
    extras = result.get("answer") or {}
    system = job.system or system_of(bundle)
    return InferResult(job_id=job.id, status=job.status, model_id=job.model_id,  # type: ignore[arg-type]
                       output=result.get("output") or [], bundle_cid=job.bundle_cid, bundle=bundle,
                       payment=settlement.payment, receipt=settlement.receipt, salt=result.get("salt"),
                       access_token=access_token, mode=spec(system).mode, system=system,
                       guarantee=extras.get("guarantee") or guarantee(system))


def job_error(job: CallRow) -> ProofMarketError:
    """A failed job's error as an answer: its code and status, the public message, the job id."""
    code = job.error_code or "proving_failed"
    return from_code(code, public_message(code, job.error_message), {"job_id": job.id})


def _job_result(job: CallRow, store: ArtifactStore | None = None) -> JobResult | None:
    if not job.result_visible:
        return None
    result = job.result or {}
    if job.kind == CallKind.COMPILE:
        return JobResult(model_id=result.get("model_id"), logrows=result.get("logrows"))
    settlement = Settlement.from_json(job.settlement)
    return JobResult(output=result.get("output"), bundle_cid=job.bundle_cid, salt=result.get("salt"),
                     payment=settlement.payment, receipt=settlement.receipt, answer=_answer(job, store))


def _answer(job: CallRow, store: ArtifactStore | None) -> dict[str, Any] | None:
    if store is None or job.bundle_cid is None or not (job.result or {}).get("answer"):
        return None
    return call_answer(job, store.get_json(job.bundle_cid))


def _job_links(job: CallRow) -> JobLinks:
    visible = job.result_visible and job.status != CallStatus.FAILED
    proof = f"/v1/proofs/{job.bundle_cid}" if visible and job.bundle_cid else None
    model = f"/v1/models/{job.model_id}" if job.model_id else None
    return JobLinks(self=f"/v1/jobs/{job.id}", proof=proof, model=model)
