"""POST /v1/models/{id}/infer: inputs in, output with its proof out (paid per call when payments are on).

Sync (default): waits for the proof and answers 200 ``{job_id, output, bundle_cid, bundle, payment,
receipt, salt, access_token}``; a proof still running after ``PROOFMARKET_INFER_WAIT_S`` answers 202 with
the job instead. ``?mode=async`` answers 202 with the job at once (poll ``GET /v1/jobs/{id}`` with its
``access_token`` in ``X-Job-Token``). A failed job answers its
error (its code and HTTP status). The same ``Idempotency-Key`` returns the same job, without paying again.

Any proof system: the model's system (``systems/registry.py``) checks the input (422 before any payment), prices
the call and runs it on the engine; the answer names its ``mode`` and ``guarantee``. Payments: the request's rail
(``Rails.select``: the one whose credential it carries, else the default); a call whose settlement is sent but not
mined is ``settling`` (202; it settles or fails on its own); an Idempotency-Key is scoped by payer (an unpaid
replay gets the 402, another payer gets another call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from proofmarket.api.deps import IdempotencyKey, ServicesDep, base_url
from proofmarket.api.schemas import InferResult, JobPublic
from proofmarket.api.views import infer_result, job_error, job_public
from proofmarket.calls import Settlement, request_hash
from proofmarket.db import CallKind, CallRow, CallStatus
from proofmarket.marketplace.webhook_targets import check_target
from proofmarket.node.services import NodeServices
from proofmarket.payments.port import Offer, Rail, accept, cover_of
from proofmarket.payments.tickets import Ticket
from proofmarket.systems import guarantee

router = APIRouter(tags=["inference"])

EXAMPLES: dict[str, Any] = {
    "input_data": {"summary": "EZKL form: one flat list per model input (here one input of 8 numbers, as the sample "
                              "MLP; each served model's own example is listed beside it)",
                   "value": {"input_data": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]}},
    "named": {"summary": "named tensors", "value": {"inputs": {"x": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]}}},
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": JobPublic, "description": "async mode, the proof is still running, or the payment is settling"},
    402: {"description": "payment_required, payment_rejected (and its subcodes: payment_insufficient_funds, "
                         "payment_window_too_short, payment_mismatch, ...), payment_settlement_failed"},
    404: {"description": "unknown_model"},
    409: {"description": "idempotency_conflict, payment_replayed, model_inactive, registry_mismatch"},
    413: {"description": "body_too_large, input_too_large"},
    422: {"description": "invalid_input, input_shape, input_not_finite, witness_failed, webhook_target_refused"},
}
InputsBody = Annotated[dict[str, Any], Body(description="one inference input", openapi_examples=EXAMPLES)]


@router.post("/v1/models/{model_id}/infer", operation_id="infer", response_model=InferResult, responses=RESPONSES)
async def infer(model_id: str, inputs: InputsBody, request: Request, services: ServicesDep,
                mode: Annotated[Literal["sync", "async"], Query()] = "sync",
                callback_url: Annotated[str | None, Query(max_length=2000, description=(
                    "POST the call's result here once it is final (signed by the node's key, retried with "
                    "backoff; X-Proofmarket-Delivery names the delivery: deduplicate on it)"))] = None,
                batch: Annotated[Literal["allow", "refuse"], Query(description=(
                    "refuse (default): this call is proven alone. allow: it may share one proof with the same "
                    "caller's other calls that allowed it (the payer's, else those from the same client address), on "
                    "a model whose owner compiled batch circuits (public-profile models only); a shared proof's "
                    "instances show every slot's input and output, so another caller's calls never share it"))
                    ] = "refuse",
                idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Run the model on the input with its proof system (EZKL: a ZK proof; attested: signed commitments, not a
    proof); pay per call when payments are on."""
    if callback_url is not None and services.webhooks is not None:  # refused before any payment is looked at
        await run_in_threadpool(check_target, callback_url, services.webhooks.allow_private)
    client = request.client.host if request.client else ""  # the trusted proxies' rule (api/proxies.py) applied
    job = await run_in_threadpool(_terms_and_submit, services, model_id, inputs, base_url(request, services.settings),
                                  request.headers, idempotency_key, batch == "allow", client)
    if callback_url is not None and services.webhooks is not None:
        await run_in_threadpool(services.webhooks.callback, job, callback_url)
    if mode == "sync" and not job.is_final:
        return await _wait(services, job.id, services.settings.queue.infer_wait_s)
    if not job.is_final or mode == "async":
        return _accepted(services, job)
    return await run_in_threadpool(_answer, services, job)


def _terms_and_submit(services: NodeServices, model_id: str, inputs: dict[str, Any], base: str,
                      headers: Mapping[str, str], key: str | None, batch: bool, client: str) -> CallRow:
    """The call's terms, then its payment and its job (one hand-off to a worker thread for both)."""
    offer, system = _offer(services, model_id, inputs, base)
    return _submit(services, offer, system, inputs, headers, key, batch, client)


def _offer(services: NodeServices, model_id: str, inputs: dict[str, Any], base: str) -> tuple[Offer, str]:
    """The call's terms, once its proof system accepts the input (422 before any payment is looked at)."""
    served = services.catalog.sellable(model_id)  # the registry terms (the follower cache) when a market is deployed
    request = {"inputs": inputs}
    runtime = services.systems.get(served.system)
    runtime.check(model_id, request)
    resource = f"{base}/v1/models/{model_id}/infer"
    listing = served.listing if served.listed else None
    offer = Offer(model_id=model_id, model_name=served.row.name,
                  price_atomic=runtime.price(model_id, request, served.price_atomic), resource=resource,
                  pay_to=listing.pay_to if listing else None, split=listing.onchain_id if listing else None,
                  description=f"verifiable ML inference: {guarantee(served.system)}"
                  + batching_terms(model_id, runtime), verifiable=json.dumps(served.verifiable(), sort_keys=True),
                  input_commitment=_commitment_of(services, served, inputs))
    return offer, served.system


def _commitment_of(services: NodeServices, served: Any, inputs: dict[str, Any]) -> Any:
    """The request's input commitment, computed only when a rail asks (x402 proven binds its payment to it): an
    EZKL model's quantised public input (or its Poseidon commitment with the request's salt), a sliced model's first
    slice's; None for others."""
    from proofmarket.systems.ids import PROVEN_SYSTEM, SLICED_SYSTEM

    if served.system not in (PROVEN_SYSTEM, SLICED_SYSTEM):
        return None

    def commit() -> str | None:
        from proofmarket.systems.ezkl.commitment import commit_inputs
        from proofmarket.systems.ezkl.verify import load_manifest

        store = services.workspace.store
        sliced = served.system == SLICED_SYSTEM  # its call commits to its first slice's input
        manifest = load_manifest(store, served.manifest.slices[0]) if sliced else served.manifest
        doc = {k: v for k, v in inputs.items() if k != "salt"}
        return commit_inputs(store, manifest, doc, inputs.get("salt")).commitment

    return commit


def batching_terms(model_id: str, runtime: Any) -> str:
    """What the 402 terms say of batching, for a model whose owner compiled batch circuits."""
    offered = getattr(runtime, "batch_key", None)
    try:
        shares = offered is not None and offered(model_id, {"batch": True}) is not None
    except Exception:  # noqa: BLE001 (a model the system cannot describe: nothing to say)
        shares = False
    return ("; batching is opt-in per call (?batch=allow): a shared proof holds only the same payer's calls (unpaid: "
            "the same client address's), never another caller's" if shares else "")


def _submit(services: NodeServices, offer: Offer, system: str, inputs: dict[str, Any], headers: Mapping[str, str],
            key: str | None, batch: bool = False, client: str = "") -> CallRow:
    """The call accepted (``payments.port.accept``): stored with its verified payment and queued. A key known for
    this payer: its call (an unpaid or other caller never gets a paid call by its key)."""
    def store(ticket: Ticket | None, rail: Rail) -> CallRow:
        return services.calls.submit_prove(offer.model_id, inputs, key=key, ticket=ticket, cover=cover_of(rail),
                                          system=system, rail=rail.name if ticket is not None else "free",
                                          batch=batch, client=client)[0]

    def existing(payer: str | None) -> CallRow | None:  # a retry of a call already made (the payer's own signature
        return services.calls.existing(key, request_hash(CallKind.PROVE, offer.model_id, inputs), payer)  # scopes it)

    accepted: CallRow = accept(services.rails, offer, headers, store, existing=existing if key else None).call
    return accepted


async def _wait(services: NodeServices, job_id: str, timeout_s: float) -> JSONResponse:
    """The answer once the call is final, or 202 while it still runs after ``timeout_s``."""
    done = await run_in_threadpool(services.queue.watch, job_id)
    final = None
    with contextlib.suppress(TimeoutError):  # still running: answer 202
        final = await asyncio.wait_for(asyncio.wrap_future(done), timeout_s)
    return await run_in_threadpool(_answer_or_accepted, services, job_id, final)


def _answer_or_accepted(services: NodeServices, job_id: str, final: CallRow | None = None) -> JSONResponse:
    """The call's answer (``final``: its final row as the engine delivered it, not read again), or 202."""
    job = final or services.calls.get(job_id)
    return _answer(services, job) if job.is_final else _accepted(services, job)


def _accepted(services: NodeServices, job: CallRow) -> JSONResponse:
    body = job_public(job, services.tokens.job(job.id))
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _answer(services: NodeServices, job: CallRow) -> JSONResponse:
    if job.status == CallStatus.FAILED:
        raise job_error(job)
    assert job.bundle_cid is not None
    bundle = services.workspace.store.get_json(job.bundle_cid)  # the one read of the bundle in this call
    headers = services.rails.answer_headers(job.rail, Settlement.from_json(job.settlement))
    body = infer_result(job, bundle, services.tokens.job(job.id))
    return JSONResponse(body.model_dump(mode="json", exclude_none=False), headers=headers or None)
