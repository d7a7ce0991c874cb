"""Rows and manifests turned into API schemas."""

from __future__ import annotations

from typing import Any

from proofmarket.api.errors import public_message
from proofmarket.api.schemas import (
    AttestedTerms,
    Commitments,
    InferResult,
    JobErrorPublic,
    JobLinks,
    JobPublic,
    JobResult,
    ModelLinks,
    ModelPublic,
    ModelSummary,
    Price,
    Privacy,
    ProverProfile,
    RegistryListing,
    Srs,
    Tensor,
    Verifier,
)
from proofmarket.calls.service import call_answer
from proofmarket.core.errors import ProofMarketError, from_code
from proofmarket.db import JobKind, JobRow, JobStatus
from proofmarket.node.catalog import ServedModel
from proofmarket.payments.tickets import Settlement
from proofmarket.store import ArtifactStore
from proofmarket.systems import ATTESTED_SYSTEM, PROVEN_SYSTEM, guarantee, spec, system_of


def model_links(model_id: str, mode: str = "proven", kind: str | None = None) -> ModelLinks:
    if mode == "attested" and kind != "onnx":
        return ModelLinks(self=f"/v1/models/{model_id}", generate=f"/v1/models/{model_id}/generate")
    return ModelLinks(self=f"/v1/models/{model_id}", infer=f"/v1/models/{model_id}/infer")


def model_summary(model: ServedModel, prover: dict[str, Any] | None = None) -> ModelSummary:
    row, m = model.row, model.manifest
    return ModelSummary(id=row.id, name=row.name, mode=model.mode,
                        price=Price.of(model.price_atomic), privacy=m.privacy["name"], owner=model.owner,
                        active=model.active, created_at=row.created_at,
                        links=model_links(row.id, model.mode, getattr(m, "kind", None)),
                        registry=registry_listing(model), prover=ProverProfile(**prover) if prover else None)


def registry_listing(model: ServedModel) -> RegistryListing | None:
    return None if model.listing is None else RegistryListing(**model.listing.to_json())


def _attested_public(model: ServedModel, prover: dict[str, Any] | None) -> ModelPublic:
    m = model.manifest
    return ModelPublic(
        **model_summary(model, prover).model_dump(), guarantee=guarantee(ATTESTED_SYSTEM),
        privacy_profile=Privacy(**{"input": "public", "params": "public", "output": "public", **m.privacy}),
        inputs=[Tensor(**t.model_dump()) for t in m.onnx.inputs] if m.onnx else [],
        attested=_attested_terms(m),
    )


def _attested_terms(m: Any) -> AttestedTerms:
    files = {name: ref.cid for name, ref in m.files.items()}
    common = {"kind": m.kind, "architecture": m.architecture, "weights_root": m.weights.root,
              "weights_dtype": m.weights.dtype, "runtime": m.runtime, "files": files}
    if m.onnx is not None:
        return AttestedTerms(**common, probes=m.onnx.probes, topk=m.onnx.topk, price_unit="per call")
    g = m.generation
    return AttestedTerms(**common, context_length=m.context_length, max_tokens_cap=g.max_tokens_cap,
                         chunk_tokens=g.chunk_tokens, topk=g.topk,
                         price_unit="per 1,000 output tokens; a call is charged for its max_tokens (exact scheme)")


def model_public(model: ServedModel, prover: dict[str, Any] | None = None) -> ModelPublic:
    if model.mode == "attested":
        return _attested_public(model, prover)
    m = model.manifest
    return ModelPublic(
        **model_summary(model, prover).model_dump(), guarantee=guarantee(PROVEN_SYSTEM),
        privacy_profile=Privacy(**m.privacy),
        inputs=[Tensor(**t.model_dump()) for t in m.inputs],
        outputs=[Tensor(**t.model_dump()) for t in m.outputs],
        is_classifier=m.is_classifier,
        logrows=m.logrows,
        commitments=Commitments(onnx_sha256=m.onnx.sha256, vk_digest=m.vk.sha256, vk_cid=m.vk.cid,
                                settings_cid=m.settings.cid,
                                srs=Srs(cid=m.srs.cid, sha256=m.srs.sha256, kind=m.srs.kind, logrows=m.srs.logrows)),
        verifier=Verifier(bytecode_cid=m.verifier.bytecode.cid, abi_cid=m.verifier.abi.cid,
                          source_cid=m.verifier.source.cid, deployed_size=m.verifier.deployed_size,
                          address=model.listing.verifier if model.listed and model.listing else None),
        accuracy=m.accuracy,
        ezkl_version=m.ezkl_version,
    )


def job_public(job: JobRow, access_token: str | None = None, store: ArtifactStore | None = None) -> JobPublic:
    """A job as its token holder (or the admin) sees it; ``access_token`` only in the answer that created it;
    ``store``: read a delivered call's bundle for its ``answer`` (calls whose system answers more than an output)."""
    error = JobErrorPublic(code=job.error_code, message=public_message(job.error_code, job.error_message)) \
        if job.error_code else None
    return JobPublic(id=job.id, kind=job.kind, status=job.status, model_id=job.model_id,  # type: ignore[arg-type]
                     system=job.system, rail=job.rail,
                     created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
                     attempts=job.attempts, error=error, result=_job_result(job, store), links=_job_links(job),
                     access_token=access_token)


def infer_result(job: JobRow, bundle: dict[str, Any], access_token: str) -> InferResult:
    result, settlement = job.result or {}, Settlement.from_json(job.settlement)
    assert job.model_id is not None and job.bundle_cid is not None
    extras = result.get("answer") or {}
    system = job.system or system_of(bundle)
    return InferResult(job_id=job.id, status=job.status, model_id=job.model_id,  # type: ignore[arg-type]
                       output=result.get("output") or [], bundle_cid=job.bundle_cid, bundle=bundle,
                       payment=settlement.payment, receipt=settlement.receipt, salt=result.get("salt"),
                       access_token=access_token, mode=spec(system).mode, system=system,
                       guarantee=extras.get("guarantee") or guarantee(system))


def job_error(job: JobRow) -> ProofMarketError:
    """A failed job's error as an answer: its code and status, the public message, the job id."""
    code = job.error_code or "proving_failed"
    return from_code(code, public_message(code, job.error_message), {"job_id": job.id})


def _job_result(job: JobRow, store: ArtifactStore | None = None) -> JobResult | None:
    if not job.result_visible:
        return None
    result = job.result or {}
    if job.kind == JobKind.COMPILE:
        return JobResult(model_id=result.get("model_id"), logrows=result.get("logrows"))
    settlement = Settlement.from_json(job.settlement)
    return JobResult(output=result.get("output"), bundle_cid=job.bundle_cid, salt=result.get("salt"),
                     payment=settlement.payment, receipt=settlement.receipt, answer=_answer(job, store))


def _answer(job: JobRow, store: ArtifactStore | None) -> dict[str, Any] | None:
    if store is None or job.bundle_cid is None or not (job.result or {}).get("answer"):
        return None
    return call_answer(job, store.get_json(job.bundle_cid))


def _job_links(job: JobRow) -> JobLinks:
    visible = job.result_visible and job.status != JobStatus.FAILED
    proof = f"/v1/proofs/{job.bundle_cid}" if visible and job.bundle_cid else None
    model = f"/v1/models/{job.model_id}" if job.model_id else None
    return JobLinks(self=f"/v1/jobs/{job.id}", proof=proof, model=model)
