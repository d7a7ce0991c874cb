"""POST /v1/models/{id}/generate: attested text generation (mode ``attested``), paid per call over x402.

    body {prompt, max_tokens?, temperature?, seed?, stream?}
      -> the model is attested (409 wrong_mode otherwise), the request fits its cap and context (422:
         max_tokens_over_cap, prompt_too_long, invalid_input): all before any payment is looked at
      -> price = ceil(price per 1,000 output tokens * max_tokens / 1,000): the cap is charged with the x402
         ``exact`` scheme (the SDK's ``upto`` scheme needs Permit2 and its proxy on the chain: not used yet)
      -> PaymentPort.verify -> generate + sign the attested bundle -> PaymentPort.settle -> 200
    A generation that fails settles nothing (the payment is released). ``stream: true`` (or
    ``Accept: text/event-stream``) answers Server-Sent Events: ``token`` per token, ``commitment`` per chunk,
    then ``result`` (the body a plain call answers, after settlement) or ``error`` ({code, message}).
    A free stream sends tokens as they are generated; a paid one sends them once the payment has settled
    (the node never streams text that may go unpaid, and never charges for a generation that failed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from proofmarket.api.deps import NodeServices, ServicesDep, base_url
from proofmarket.api.payments import Offer
from proofmarket.api.schemas import GenerateResult
from proofmarket.errors import ProofMarketError, WrongMode
from proofmarket.jobs.types import PaymentTicket, ProofOutcome

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
    402: {"description": "payment_required, payment_rejected (and subcodes), payment_settlement_failed"},
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
    ticket = await run_in_threadpool(_pay, services, offer, request.headers)
    if stream:
        return StreamingResponse(_events(services, model_id, call, ticket), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    try:
        answer, headers = await run_in_threadpool(_run, services, model_id, call, ticket, None)
    except BaseException:
        _release(services, ticket)
        raise
    return JSONResponse(answer, headers=headers or None)


async def attested_infer(model_id: str, inputs: dict[str, Any], request: Request, services: NodeServices) -> Any:
    """POST /v1/models/{id}/infer on an attested ONNX model: input checked, paid, run, signed, settled."""
    offer = await run_in_threadpool(_onnx_offer, services, model_id, inputs, base_url(request, services.settings))
    ticket = await run_in_threadpool(_pay, services, offer, request.headers)
    try:
        answer, headers = await run_in_threadpool(_run_onnx, services, model_id, inputs, ticket)
    except BaseException:
        _release(services, ticket)
        raise
    return JSONResponse(answer, headers=headers or None)


def _onnx_offer(services: NodeServices, model_id: str, inputs: dict[str, Any], base: str) -> Offer:
    from proofmarket import models

    served = services.catalog.get(model_id)
    model = services.attested.runtime.onnx_model(model_id)  # wrong_mode for a causal LM
    models.parse_inputs(inputs, model.info)  # 422 before any payment
    return Offer(model_id=model_id, model_name=served.row.name, price_atomic=served.price_atomic,
                 resource=f"{base}/v1/models/{model_id}/infer",
                 description="attested ML inference: output with signed activation commitments (not a ZK proof)")


def _run_onnx(services: NodeServices, model_id: str, inputs: dict[str, Any],
              ticket: PaymentTicket | None) -> tuple[dict[str, Any], dict[str, str]]:
    bundle, cid = _measured(services, "infer", lambda: services.attested.runtime.infer(
        model_id, inputs, services.attested.signer, services.attested.chain_id))
    payment, receipt, headers, doc = _settle(services, ticket, "att", cid, bundle)
    answer = {"job_id": None, "status": "settled" if ticket is not None else "proved", "model_id": model_id,
              "mode": "attested", "output": bundle.output.values, "bundle_cid": cid, "bundle": doc,
              "payment": payment, "receipt": receipt, "salt": None, "access_token": None,
              "guarantee": "attested: the node's signed commitment, re-checkable with the weights (not a ZK proof)"}
    return answer, headers


def _settle(services: NodeServices, ticket: PaymentTicket | None, prefix: str, cid: str, bundle: Any
            ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, str], dict[str, Any]]:
    """Settle an attested call's payment (when paid): (payment, receipt, response headers, the bundle document
    with its payment and receipt)."""
    doc = bundle.to_doc()
    if ticket is None:
        return None, None, {}, doc
    settlement = services.payments.settle(ticket, ProofOutcome.of(f"{prefix}-{uuid.uuid4().hex[:12]}", cid, bundle))
    payment = settlement.payment
    doc = {**doc, "payment": {k: v for k, v in (payment or {}).items() if k != "paid_bundle_cid"},
           "receipt": settlement.receipt}
    return payment, settlement.receipt, dict(settlement.headers or {}), doc


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


def _pay(services: NodeServices, offer: Offer, headers: Mapping[str, str]) -> PaymentTicket | None:
    ticket = services.payments.verify(headers, offer)
    if ticket is not None:
        try:
            services.payments.cover(ticket, 0)
        except BaseException:
            services.payments.release(ticket)
            raise
    return ticket


def _release(services: NodeServices, ticket: PaymentTicket | None) -> None:
    if ticket is not None:
        try:
            services.payments.release(ticket)
        except Exception:
            log.exception("could not release a generate payment")


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


def _run(services: NodeServices, model_id: str, call: Any, ticket: PaymentTicket | None,
         emit: Any) -> tuple[dict[str, Any], dict[str, str]]:
    on_token = (lambda i, t, text: emit("token", {"index": i, "token": t, "text": text})) if emit else None
    on_chunk = (lambda i, c: emit("commitment", {"chunk": i, "commitment": c})) if emit else None
    bundle, cid = _measured(services, "generate", lambda: services.attested.run(
        model_id, call, on_token=on_token, on_chunk=on_chunk))
    if getattr(services.attested, "metrics", None) is not None:
        services.attested.metrics.tokens.inc(len(bundle.output.tokens))
    payment, receipt, headers, doc = _settle(services, ticket, "gen", cid, bundle)
    out = bundle.output
    answer = {"model_id": model_id, "mode": "attested", "text": out.text, "tokens": out.tokens,
              "finish_reason": out.finish_reason,
              "usage": {"prompt_tokens": len(bundle.input.tokens), "completion_tokens": len(out.tokens),
                        "charged_tokens": call.max_tokens},
              "bundle_cid": cid, "bundle": doc, "payment": payment, "receipt": receipt,
              "guarantee": "attested: the node's signed commitment, re-checkable with the weights (not a ZK proof)"}
    return answer, headers


async def _events(services: NodeServices, model_id: str, call: Any,
                  ticket: PaymentTicket | None) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

    def emit(event: str, data: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (event, data))

    held: list[tuple[str, Any]] = []

    def hold(event: str, data: Any) -> None:  # a paid stream: nothing leaves before the payment settled
        held.append((event, data))

    def work() -> None:
        try:
            answer, _ = _run(services, model_id, call, ticket, emit if ticket is None else hold)
            for event, data in held:
                emit(event, data)
            emit("result", answer)
        except ProofMarketError as exc:
            _release(services, ticket)
            emit("error", {"code": exc.code, "message": exc.message})
        except BaseException:
            _release(services, ticket)
            log.exception("generation of %s failed", model_id)
            emit("error", {"code": "internal_error",
                           "message": "the generation failed; the node's log has the details"})
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=work, name="generate", daemon=True).start()
    while (item := await queue.get()) is not None:
        event, data = item
        yield f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
