"""POST /v1/models/{id}/generate: attested text generation (mode ``attested``), paid per call over x402.

    body {prompt, max_tokens?, temperature?, seed?, stream?}
      -> the model is attested (409 wrong_mode otherwise), the request fits its cap and context (422:
         max_tokens_over_cap, prompt_too_long, invalid_input): all before any payment is looked at
      -> price = ceil(price per 1,000 output tokens * max_tokens / 1,000): the cap is charged with the x402
         ``exact`` scheme (the SDK's ``upto`` scheme needs Permit2 and its proxy on the chain: not used yet)
      -> PaymentPort.verify -> the call held as a job (``JobService.open_call``: the payer's balance must cover
         it on top of its other unsettled calls, else 402 payment_insufficient_funds, before anything runs)
      -> generate + sign the attested bundle -> settled as a paid job settles (``JobService.finish_call``) -> 200
    A generation that fails settles nothing (the payment is released). A settlement still pending when the
    facilitator stops waiting answers 202 with the job (``GET /v1/jobs/{id}`` with its ``access_token`` in
    ``X-Job-Token``): the node keeps the hold and the answer, shows it there (``result.answer``) once the transfer
    is mined, or fails the job with nothing charged once the authorization expires unused.
    ``stream: true`` (or ``Accept: text/event-stream``) answers Server-Sent Events: ``token`` per token,
    ``commitment`` per chunk, then ``result`` (the body a plain call answers, after settlement), ``pending``
    (the 202 body: the job to poll) or ``error`` ({code, message}). A free stream sends tokens as they are
    generated; a paid one sends them once the payment has settled (the node never streams text that may go
    unpaid, and never charges for a generation that failed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from proofmarket.api.deps import NodeServices, ServicesDep, base_url
from proofmarket.api.schemas import GenerateResult, JobPublic
from proofmarket.api.views import job_error, job_public
from proofmarket.calls.service import call_answer
from proofmarket.core.errors import PaymentReplayed, ProofMarketError, WrongMode
from proofmarket.db import JobRow, JobStatus
from proofmarket.payments.port import Offer
from proofmarket.payments.tickets import PaymentTicket, Settlement

router = APIRouter(tags=["inference"])
log = logging.getLogger("proofmarket.generate")

EXAMPLES: dict[str, Any] = {
    "greedy": {"summary": "greedy decoding", "value": {"prompt": "the quick brown fox", "max_tokens": 32}},
    "sampled": {"summary": "sampling with a committed seed",
                "value": {"prompt": "the quick brown fox", "max_tokens": 32, "temperature": 0.8, "seed": 7}},
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": GenerateResult,
          "description": "the text with its attested bundle (or an SSE stream of token, commitment, result)"},
    202: {"model": JobPublic, "description": "the payment is settling: poll the job, its result.answer is this "
                                             "answer once the transfer is mined (nothing charged if it never is)"},
    402: {"description": "payment_required, payment_rejected (and subcodes: payment_insufficient_funds when the "
                         "payer's other unsettled calls hold its balance), payment_settlement_failed"},
    404: {"description": "unknown_model"},
    409: {"description": "wrong_mode (a proven model: use /infer), payment_replayed"},
    422: {"description": "invalid_input, max_tokens_over_cap, prompt_too_long"},
}
GenerateBody = Annotated[dict[str, Any], Body(description="prompt, max_tokens, temperature, seed, stream",
                                              openapi_examples=EXAMPLES)]


@router.post("/v1/models/{model_id}/generate", operation_id="generate", responses=RESPONSES)
async def generate(model_id: str, body: GenerateBody, request: Request, services: ServicesDep) -> Any:
    """Generate text with an attested model; the answer carries the node's signed attestation (not a ZK proof)."""
    stream = bool(body.get("stream")) or "text/event-stream" in request.headers.get("accept", "")
    doc = {k: v for k, v in body.items() if k != "stream"}
    offer, call = await run_in_threadpool(_offer, services, model_id, doc, base_url(request, services.settings))
    paid = await run_in_threadpool(_pay, services, offer, request.headers, doc)
    if stream:
        return StreamingResponse(_events(services, model_id, call, paid), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    return await _respond(services, paid, lambda: _run(services, model_id, call, paid, None))


async def attested_infer(model_id: str, inputs: dict[str, Any], request: Request, services: NodeServices) -> Any:
    """POST /v1/models/{id}/infer on an attested ONNX model: input checked, paid, run, signed, settled."""
    offer = await run_in_threadpool(_onnx_offer, services, model_id, inputs, base_url(request, services.settings))
    paid = await run_in_threadpool(_pay, services, offer, request.headers, {"inputs": inputs})
    return await _respond(services, paid, lambda: _run_onnx(services, model_id, inputs, paid))


@dataclass(frozen=True)
class Paid:
    """A verified payment and the job that holds it while the call runs and settles."""

    ticket: PaymentTicket
    job: JobRow


Answered = tuple[dict[str, Any], dict[str, str]]  # the 200 answer and its headers
Outcome = Answered | JobRow  # or the job still settling (202)


async def _respond(services: NodeServices, paid: Paid | None, run: Callable[[], Outcome]) -> JSONResponse:
    try:
        outcome = await run_in_threadpool(run)
    except BaseException as exc:
        _failed(services, paid, exc)
        raise
    if isinstance(outcome, JobRow):
        return JSONResponse(_accepted(services, outcome), status_code=202,
                            headers={"Location": f"/v1/jobs/{outcome.id}"})
    answer, headers = outcome
    return JSONResponse(answer, headers=headers or None)


def _accepted(services: NodeServices, job: JobRow) -> dict[str, Any]:
    """The 202 body (and the stream's ``pending`` event): the job to poll, with the token that opens it."""
    return job_public(job, services.tokens.job(job.id)).model_dump(mode="json")


def _onnx_offer(services: NodeServices, model_id: str, inputs: dict[str, Any], base: str) -> Offer:
    from proofmarket import models

    served = services.catalog.get(model_id)
    model = services.attested.runtime.onnx_model(model_id)  # wrong_mode for a causal LM
    models.parse_inputs(inputs, model.info)  # 422 before any payment
    return Offer(model_id=model_id, model_name=served.row.name, price_atomic=served.price_atomic,
                 resource=f"{base}/v1/models/{model_id}/infer",
                 description="attested ML inference: output with signed activation commitments (not a ZK proof)")


def _run_onnx(services: NodeServices, model_id: str, inputs: dict[str, Any], paid: Paid | None) -> Outcome:
    bundle, cid = _measured(services, "infer", lambda: services.attested.runtime.infer(
        model_id, inputs, services.attested.signer, services.attested.chain_id))
    answer = {"job_id": None, "status": "proved", "model_id": model_id,
              "mode": "attested", "output": bundle.output.values, "bundle_cid": cid, "bundle": bundle.to_doc(),
              "payment": None, "receipt": None, "salt": None, "access_token": None,
              "guarantee": "attested: the node's signed commitment, re-checkable with the weights (not a ZK proof)"}
    return _settled(services, paid, cid, answer, bundle.output.values)


def _settled(services: NodeServices, paid: Paid | None, cid: str, answer: dict[str, Any],
             output: list[list[float]] | None = None) -> Outcome:
    """A free answer as it is; a paid one once its payment settles, through the job that holds it: settled ->
    the answer with payment and receipt; still pending -> the job (202); failed -> its error (nothing charged)."""
    if paid is None:
        return answer, {}
    job = services.jobs.finish_call(paid.job.id, cid, {"output": output, "answer": answer})
    if job.status == JobStatus.SETTLING:
        return job
    delivered = call_answer(job)
    if delivered is None:
        raise job_error(job)
    delivered["access_token"] = services.tokens.job(job.id)
    return delivered, dict(Settlement.from_json(job.settlement).headers or {})


def _offer(services: NodeServices, model_id: str, doc: dict[str, Any], base: str) -> tuple[Offer, Any]:
    served = services.catalog.sellable(model_id)
    if served.mode != "attested":
        raise WrongMode(f"model {model_id} is proven (a ZK proof per call): call POST /v1/models/{model_id}/infer",
                        model_id=model_id, mode=served.mode)
    call = services.attested.runtime.request(model_id, doc)
    services.attested.runtime.check(model_id, call)  # cap and context, before any payment
    return Offer(model_id=model_id, model_name=served.row.name, price_atomic=call.price_atomic(served.price_atomic),
                 resource=f"{base}/v1/models/{model_id}/generate",
                 description=f"attested text generation: up to {call.max_tokens} tokens, charged for max_tokens at "
                             f"{served.price_atomic} atomic units per 1,000 (exact scheme); an attestation, not a "
                             "ZK proof"), call


def _pay(services: NodeServices, offer: Offer, headers: Mapping[str, str], request: dict[str, Any]) -> Paid | None:
    """Verify the payment and hold it as a job: refused (402) when the payer's balance does not also cover what
    its other unsettled calls hold."""
    ticket = services.payments.verify(headers, offer)
    if ticket is None:
        return None
    try:
        return Paid(ticket, services.jobs.open_call(offer.model_id, request, ticket, services.payments.cover))
    except PaymentReplayed:  # the nonce belongs to another call: its reservation is not ours to release
        raise
    except BaseException:
        services.payments.release(ticket)
        raise


def _failed(services: NodeServices, paid: Paid | None, exc: BaseException) -> None:
    """The call failed before it settled: its job fails and the payment is released (nothing charged). A job
    already settled, settling or failed is left as it is."""
    if paid is None:
        return
    code, message = ((exc.code, exc.message) if isinstance(exc, ProofMarketError)
                     else ("internal_error", "the call failed; the node's log has the details"))
    try:
        services.jobs.fail_call(paid.job.id, code, message)
    except Exception:
        log.exception("could not release the payment of attested call %s", paid.job.id)


def _measured(services: NodeServices, route: str, fn: Any) -> Any:
    """Run ``fn`` and count it (outcome ok or the error code) and time it on the node's metrics."""
    import time

    metrics = getattr(services.attested, "metrics", None)
    start = time.perf_counter()
    try:
        result = fn()
    except ProofMarketError as exc:
        if metrics is not None:
            metrics.calls.labels(route, exc.code).inc()
        raise
    if metrics is not None:
        metrics.calls.labels(route, "ok").inc()
        metrics.duration.labels(route).observe(time.perf_counter() - start)
    return result


def _run(services: NodeServices, model_id: str, call: Any, paid: Paid | None, emit: Any) -> Outcome:
    on_token = (lambda i, t, text: emit("token", {"index": i, "token": t, "text": text})) if emit else None
    on_chunk = (lambda i, c: emit("commitment", {"chunk": i, "commitment": c})) if emit else None
    bundle, cid = _measured(services, "generate", lambda: services.attested.run(
        model_id, call, on_token=on_token, on_chunk=on_chunk))
    if getattr(services.attested, "metrics", None) is not None:
        services.attested.metrics.tokens.inc(len(bundle.output.tokens))
    out = bundle.output
    answer = {"model_id": model_id, "mode": "attested", "text": out.text, "tokens": out.tokens,
              "finish_reason": out.finish_reason,
              "usage": {"prompt_tokens": len(bundle.input.tokens), "completion_tokens": len(out.tokens),
                        "charged_tokens": call.max_tokens},
              "bundle_cid": cid, "bundle": bundle.to_doc(), "payment": None, "receipt": None,
              "guarantee": "attested: the node's signed commitment, re-checkable with the weights (not a ZK proof)"}
    return _settled(services, paid, cid, answer)


async def _events(services: NodeServices, model_id: str, call: Any, paid: Paid | None) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

    def emit(event: str, data: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (event, data))

    held: list[tuple[str, Any]] = []

    def hold(event: str, data: Any) -> None:  # a paid stream: nothing leaves before the payment settled
        held.append((event, data))

    def work() -> None:
        try:
            outcome = _run(services, model_id, call, paid, emit if paid is None else hold)
            if isinstance(outcome, JobRow):  # settling: the text waits at the job until the transfer is mined
                emit("pending", _accepted(services, outcome))
                return
            for event, data in held:
                emit(event, data)
            emit("result", outcome[0])
        except ProofMarketError as exc:
            _failed(services, paid, exc)
            emit("error", {"code": exc.code, "message": exc.message})
        except BaseException as exc:
            _failed(services, paid, exc)
            log.exception("generation of %s failed", model_id)
            emit("error", {"code": "internal_error",
                           "message": "the generation failed; the node's log has the details"})
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=work, name="generate", daemon=True).start()
    while (item := await queue.get()) is not None:
        event, data = item
        yield f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
