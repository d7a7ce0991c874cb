"""POST /v1/models/{id}/generate: attested text generation (mode ``attested``), paid per call over x402.

    body {prompt, max_tokens?, temperature?, seed?, stream?}
      -> the model is attested (409 wrong_mode otherwise), the request fits its cap and context (422:
         max_tokens_over_cap, prompt_too_long, invalid_input): all before any payment is looked at
      -> ceiling = ceil(price per 1,000 output tokens * max_tokens / 1,000): x402 ``upto`` (listed first in the
         402 terms: a Permit2 authorization of the ceiling), channels and credits are charged the tokens generated;
         x402 ``exact`` captures the ceiling
      -> Rail.verify -> the call held as a job (``CallService.open_call``: the payer's balance must cover
         it on top of its other unsettled calls, else 402 payment_insufficient_funds, before anything runs)
      -> generate + sign the attested bundle -> settled as a paid job settles (``CallService.finish_call``) -> 200
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
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from proofmarket.api.deps import ServicesDep, base_url
from proofmarket.api.schemas import GenerateResult, JobPublic
from proofmarket.api.views import job_error, job_public
from proofmarket.calls.service import call_answer
from proofmarket.core.errors import PaymentReplayed, ProofMarketError, WrongMode
from proofmarket.db import CallRow, CallStatus
from proofmarket.node.services import NodeServices
from proofmarket.payments.port import Offer, Rail, cover_of
from proofmarket.payments.tickets import Settlement, Ticket
from proofmarket.systems import spec
from proofmarket.systems.port import Events

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
    offer, system = await run_in_threadpool(_offer, services, model_id, doc, base_url(request, services.settings))
    call = await run_in_threadpool(_open, services, offer, system, request.headers, doc)
    if stream:
        return EventSourceResponse(_events(services, call), sep="\n",
                                   headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    try:
        outcome = await run_in_threadpool(_run, services, call, None)
    except BaseException as exc:
        _failed(services, call, exc)
        raise
    if isinstance(outcome, CallRow):
        return JSONResponse(_accepted(services, outcome), status_code=202,
                            headers={"Location": f"/v1/jobs/{outcome.id}"})
    answer, headers = outcome
    return JSONResponse(answer, headers=headers or None)


@dataclass(frozen=True)
class Opened:
    """A generation held as a call while it runs and settles: its row, its payment (None: free) and rail."""

    job: CallRow
    ticket: Ticket | None
    rail: Rail
    request: dict[str, Any]


Answered = tuple[dict[str, Any], dict[str, str]]  # the 200 answer and its headers
Outcome = Answered | CallRow  # or the call still settling (202)


def _accepted(services: NodeServices, job: CallRow) -> dict[str, Any]:
    """The 202 body (and the stream's ``pending`` event): the job to poll, with the token that opens it."""
    return job_public(job, services.tokens.job(job.id)).model_dump(mode="json")


def _offer(services: NodeServices, model_id: str, doc: dict[str, Any], base: str) -> tuple[Offer, str]:
    """The generation's terms once its system accepts the request (cap and context: 422 before any payment)."""
    served = services.catalog.sellable(model_id)
    if not spec(served.system).generates:
        raise WrongMode(f"model {model_id} does not generate text: call POST /v1/models/{model_id}/infer",
                        model_id=model_id, mode=served.mode)
    runtime = services.systems.get(served.system)
    runtime.check(model_id, doc)
    price = runtime.price(model_id, doc, served.price_atomic)
    max_tokens = doc.get("max_tokens", "the default number of")
    return Offer(model_id=model_id, model_name=served.row.name, price_atomic=price,
                 resource=f"{base}/v1/models/{model_id}/generate",
                 description=f"attested text generation: up to {max_tokens} tokens at {served.price_atomic} atomic "
                             "units per 1,000: the tokens produced are charged on upto, batch-settlement and "
                             "credits, max_tokens on exact; an attestation, not a ZK proof",
                 per_1k_tokens=runtime.metered(model_id, doc, served.price_atomic)), served.system


def _open(services: NodeServices, offer: Offer, system: str, headers: Mapping[str, str],
          request: dict[str, Any]) -> Opened:
    """Verify the payment (if any) and hold the call as a job: refused (402) when the payer's balance does not
    also cover what its other unsettled calls hold. A free generation is a call too."""
    rail = services.rails.select(headers)
    ticket = rail.verify(headers, offer)
    try:
        job = services.jobs.open_call(offer.model_id, request, ticket, cover_of(rail), system=system,
                                      rail=rail.name if ticket is not None else "free")
    except PaymentReplayed:  # the nonce belongs to another call: its reservation is not ours to release
        raise
    except BaseException:
        if ticket is not None:
            rail.release(ticket)
        raise
    return Opened(job, ticket, rail, request)


def _failed(services: NodeServices, call: Opened, exc: BaseException) -> None:
    """The call failed before it settled: it fails and its payment is released (nothing charged). A call already
    settled, settling or failed is left as it is."""
    services.jobs.fail_call_on(call.job.id, exc)


def _run(services: NodeServices, call: Opened, emit: Events | None) -> Outcome:
    """Run the generation on its system, then record and settle it through the one runner: the answer (settled
    or free), the call still settling (202), or its error (nothing charged)."""
    job = call.job
    assert job.model_id is not None and job.system is not None
    start = time.perf_counter()
    execution = services.systems.get(job.system).run(job.model_id, call.request, emit)
    job = services.jobs.finish_call(job.id, execution, time.perf_counter() - start)
    if job.status == CallStatus.SETTLING:
        return job
    delivered = call_answer(job, execution.bundle.to_doc())
    if delivered is None:
        raise job_error(job)
    delivered["access_token"] = services.tokens.job(job.id)
    return delivered, services.rails.answer_headers(job.rail, Settlement.from_json(job.settlement))


async def _events(services: NodeServices, call: Opened) -> AsyncIterator[dict[str, str]]:
    async for event, data in event_items(services, call):
        if event in ("result", "error"):  # the answer's headers and the error's status are not sent in a stream
            data = {k: v for k, v in data.items() if k not in ("_headers", "status")}
        yield {"event": event, "data": json.dumps(data, separators=(",", ":"))}  # framed by the response's sep


async def event_items(services: NodeServices, call: Opened) -> AsyncIterator[tuple[str, Any]]:
    """A generation's events as it runs: ``token`` (free: as generated; paid: once settled), ``commitment``, then
    ``result`` (the answer), ``pending`` (the 202 body) or ``error`` ({code, message}). One path for every stream
    (this route's SSE, the OpenAI-compatible one's chunks). ``result`` carries its answer's headers in ``_headers``,
    ``error`` its HTTP ``status``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

    def emit(event: str, data: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (event, data))

    held: list[tuple[str, Any]] = []

    def hold(event: str, data: Any) -> None:  # a paid stream: nothing leaves before the payment settled
        held.append((event, data))

    def work() -> None:
        try:
            outcome = _run(services, call, emit if call.ticket is None else hold)
            if isinstance(outcome, CallRow):  # settling: the text waits at the job until the transfer is mined
                emit("pending", _accepted(services, outcome))
                return
            for event, data in held:
                emit(event, data)
            emit("result", {**outcome[0], "_headers": outcome[1]})
        except ProofMarketError as exc:
            _failed(services, call, exc)
            emit("error", {"code": exc.code, "message": exc.message, "status": exc.http_status})
        except BaseException as exc:
            _failed(services, call, exc)
            log.exception("generation of %s failed", call.job.model_id)
            emit("error", {"code": "internal_error", "status": 500,
                           "message": "the generation failed; the node's log has the details"})
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=work, name="generate", daemon=True).start()
    while (item := await queue.get()) is not None:
        yield item
