"""POST /v1/models/{id}/generate: attested text generation (mode ``attested``), paid per call over x402.

    body {prompt, max_tokens?, temperature?, seed?, stream?}
      -> the model is attested (409 wrong_mode otherwise), the request fits its cap and context (422:
         max_tokens_over_cap, prompt_too_long, invalid_input): all before any payment is looked at
      -> ceiling = ceil(price per 1,000 output tokens * max_tokens / 1,000): x402 ``upto`` (listed first in the
         402 terms: a Permit2 authorization of the ceiling), channels and credits are charged the tokens generated;
         x402 ``exact`` captures the ceiling
      -> Rail.verify -> the call held as a job (``CallService.hold_call``: the payer's balance must cover
         it on top of its other unsettled calls, else 402 payment_insufficient_funds, before anything runs)
      -> queued on the node's engine (``start_call``): its attested system generates and signs the bundle, the
         request hears its tokens -> settled by the node's settler as a paid job settles -> 200
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

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from proofmarket.api.deps import ServicesDep, base_url
from proofmarket.api.generation import Opened, answer, event_items, offer_for, open_call
from proofmarket.api.schemas import GenerateResult, JobPublic
from proofmarket.node.services import NodeServices

router = APIRouter(tags=["inference"])

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
    offer, system = await run_in_threadpool(offer_for, services, model_id, doc, base_url(request, services.settings))
    call = await run_in_threadpool(open_call, services, offer, system, request.headers, doc)
    if stream:
        return EventSourceResponse(_events(services, call), sep="\n",
                                   headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    done = await answer(services, call)
    if isinstance(done, JSONResponse):
        return done
    body_out, headers = done
    return JSONResponse(body_out, headers=headers or None)


async def _events(services: NodeServices, call: Opened) -> AsyncIterator[dict[str, str]]:
    async for event, data in event_items(services, call):
        if event in ("result", "error"):  # the answer's headers and the error's status are not sent in a stream
            data = {k: v for k, v in data.items() if k not in ("_headers", "status")}
        yield {"event": event, "data": json.dumps(data, separators=(",", ":"))}  # framed by the response's sep


