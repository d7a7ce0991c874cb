"""Generation as a call, for every route that sells one (``POST /v1/models/{id}/generate``, the OpenAI-compatible
routes): the offer (terms before any payment), the call held with its payment, its run on the engine and its
settlement through the one runner, its events as it runs. The routes only read requests and shape answers.

    offer_for(services, model_id, doc, base)  -> the Offer and the model's system (422 before any payment)
    open_call(services, offer, system, headers, doc) -> Opened (the payment verified, the call held; 402 otherwise)
    await answer(services, call)               -> (answer, headers), or a 202 JSONResponse (settling)
    event_items(services, call)                -> token, commitment, then result, pending or error

A generation is a call of the node's engine like any other: queued (``CallService.start_call``) with the request
listening to its run's events (the local engine's worker thread calls it; a Celery worker's events come through
Redis, ``calls/events.py``), settled by the node's settler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from proofmarket.api.views import job_error, job_public
from proofmarket.calls.service import call_answer
from proofmarket.core.errors import InternalError, ProofMarketError, ProofTimeout, WrongMode, from_code
from proofmarket.db import CallRow, CallStatus
from proofmarket.node.services import NodeServices
from proofmarket.payments.port import Offer, Rail, accept, cover_of
from proofmarket.payments.tickets import Settlement, Ticket
from proofmarket.systems import spec
from proofmarket.systems.port import Events

log = logging.getLogger("proofmarket.generate")
EVENTS_AFTER_S = 10.0  # how long the answer waits, once the call is done, for its last events to come (Redis)


@dataclass(frozen=True)
class Opened:
    """A generation held as a call while it runs and settles: its row, its payment (None: free) and rail."""

    job: CallRow
    ticket: Ticket | None
    rail: Rail
    request: dict[str, Any]


Answered = tuple[dict[str, Any], dict[str, str]]  # the 200 answer and its headers
Outcome = Answered | CallRow  # or the call still settling (202)


def accepted(services: NodeServices, job: CallRow) -> dict[str, Any]:
    """The 202 body (and the stream's ``pending`` event): the job to poll, with the token that opens it."""
    return job_public(job, services.tokens.job(job.id)).model_dump(mode="json")


def offer_for(services: NodeServices, model_id: str, doc: dict[str, Any], base: str) -> tuple[Offer, str]:
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
                 per_1k_tokens=runtime.metered(model_id, doc, served.price_atomic),
                 verifiable=json.dumps(served.verifiable(), sort_keys=True)), served.system


def open_call(services: NodeServices, offer: Offer, system: str, headers: Mapping[str, str],
          request: dict[str, Any]) -> Opened:
    """Verify the payment (if any) and hold the call as a job: refused (402) when the payer's balance does not
    also cover what its other unsettled calls hold. A free generation is a call too."""
    accepted = accept(services.rails, offer, headers, lambda ticket, rail: services.calls.hold_call(
        offer.model_id, request, ticket, cover_of(rail), system=system,
        rail=rail.name if ticket is not None else "free"))
    return Opened(accepted.call, accepted.ticket, accepted.rail, request)


def failed(services: NodeServices, call: Opened, exc: BaseException) -> None:
    """The call failed before it settled: it fails and its payment is released (nothing charged). A call already
    settled, settling or failed is left as it is."""
    services.calls.fail_call_on(call.job.id, exc)


def run(services: NodeServices, call: Opened, emit: Events) -> Outcome:
    """Queue the generation on the node's engine, with ``emit`` listening to its events, and wait for the runner to
    record and settle it: the answer (settled or free), the call still settling (202), or its error (nothing
    charged)."""
    done = services.calls.start_call(call.job, emit)
    job = _settled(services, call.job.id)
    done.wait(EVENTS_AFTER_S)  # every event of the run handed over before the answer
    if job.status == CallStatus.SETTLING:
        return job
    if job.status == CallStatus.FAILED:
        raise from_code(job.error_code or "proving_failed", job.error_message or "the generation failed",
                        {"job_id": job.id})
    assert job.bundle_cid is not None
    delivered = call_answer(job, services.workspace.store.get_json(job.bundle_cid))
    if delivered is None:
        raise job_error(job)
    delivered["access_token"] = services.tokens.job(job.id)
    return delivered, services.rails.answer_headers(job.rail, Settlement.from_json(job.settlement))


def _settled(services: NodeServices, job_id: str) -> CallRow:
    """The call once its engine and the settler are done with it (final, or settling); failed with ``proof_timeout``
    when it is still waiting after the proof timeout and two minutes."""
    wait = services.settings.queue.proof_timeout_s + 120.0
    deadline, watched = time.monotonic() + wait, services.calls.queue.watch(job_id)
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                watched.result(max(0.0, min(1.0, deadline - time.monotonic())))
            job = services.calls.get(job_id)
            if job.is_final or job.status == CallStatus.SETTLING:
                return job
            if time.monotonic() >= deadline:
                late = ProofTimeout(f"the generation's call {job_id} is still {job.status} after {wait:.0f} s",
                                    job_id=job_id)
                services.calls.fail_call(job_id, late.code, late.message)
                raise late
    finally:
        watched.cancel()


async def answer(services: NodeServices, call: Opened) -> Answered | JSONResponse:
    """Run a held generation to its answer: the 200 answer and its headers, or the 202 answer naming the call while
    its payment settles. A failure fails the call (nothing charged) and is raised."""
    try:
        outcome = await run_in_threadpool(run, services, call, lambda event, data: None)
    except BaseException as exc:
        failed(services, call, exc)
        raise
    if isinstance(outcome, CallRow):
        return JSONResponse(accepted(services, outcome), status_code=202,
                            headers={"Location": f"/v1/jobs/{outcome.id}"})
    return outcome


async def event_items(services: NodeServices, call: Opened) -> AsyncIterator[tuple[str, Any]]:
    """A generation's events as it runs on the engine: ``token`` (free: as generated; paid: once settled),
    ``commitment``, then ``result`` (the answer), ``pending`` (the 202 body) or ``error`` ({code, message}). One path
    for every stream (this route's SSE, the OpenAI-compatible one's chunks). ``result`` carries its answer's headers
    in ``_headers``, ``error`` its HTTP ``status``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
    held: list[tuple[str, Any]] = []

    def emit(event: str, data: Any) -> None:  # from the worker's thread (or the events' listener)
        loop.call_soon_threadsafe(queue.put_nowait, (event, data))

    def hold(event: str, data: Any) -> None:  # a paid stream: nothing leaves before the payment settled
        held.append((event, data))

    running = asyncio.ensure_future(run_in_threadpool(run, services, call, emit if call.ticket is None else hold))
    running.add_done_callback(lambda _: queue.put_nowait(None))  # after the events it scheduled: they came first
    while (item := await queue.get()) is not None:
        yield item
    try:
        outcome = running.result()
    except ProofMarketError as exc:
        failed(services, call, exc)
        yield "error", {"code": exc.code, "message": exc.message, "status": exc.http_status}
        return
    except BaseException:
        failed(services, call, InternalError("the generation failed"))
        log.exception("generation of %s failed", call.job.model_id)
        yield "error", {"code": "internal_error", "status": 500,
                        "message": "the generation failed; the node's log has the details"}
        return
    if isinstance(outcome, CallRow):  # settling: the text waits at the job until the transfer is mined
        yield "pending", accepted(services, outcome)
        return
    for item in held:
        yield item
    yield "result", {**outcome[0], "_headers": outcome[1]}
