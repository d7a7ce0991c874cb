"""An OpenAI-compatible API for the node's attested language models: integrating is changing a base URL.

    GET  /openai/v1/models               the attested models that generate text (OpenAI's list shape)
    POST /openai/v1/chat/completions     messages -> the model's chat template (its tokenizer's, else role lines)
    POST /openai/v1/completions          prompt -> text
Both take model, max_tokens (or max_completion_tokens), temperature, seed, stream (OpenAI's SSE chunks, then
``data: [DONE]``; ``stream_options.include_usage`` adds a usage chunk) and run the native generate route's one path
(``generate.py``: offer, the request's payment rail, the held call, run, settle). Pay with an API key (``Authorization:
Bearer pmk_...``: the ``credits`` rail draws the tokens produced at the model's price per 1,000) or any rail the node
takes; a paid model asked without one answers 401. n > 1, tools, functions and logprobs are refused (400).
Each answer names its attested bundle: ``proofmarket: {bundle_cid, bundle_url, job_id, access_token, receipt,
guarantee}`` and the ``X-Proofmarket-Bundle`` header; ``proofmarket verify`` (or ``POST /v1/verify``) re-checks it.
Errors are OpenAI's shape, ``{"error": {message, type, param, code}}``, with the stable code as ``code``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from proofmarket.api.deps import ServicesDep, base_url
from proofmarket.api.errors import error_response
from proofmarket.api.generation import answer, event_items, offer_for, open_call
from proofmarket.core.errors import InputError, PaymentRequired, ProofMarketError, Unauthorized
from proofmarket.node.services import NodeServices
from proofmarket.payments.credits.rail import api_key_of
from proofmarket.systems import spec

router = APIRouter(prefix="/openai/v1", tags=["openai"])
UNSUPPORTED = ("tools", "functions", "tool_choice", "logprobs", "top_logprobs", "response_format")
MAX_MESSAGES = 256
FINISH = {"eos": "stop", "stop": "stop", "length": "length", "max_tokens": "length"}


class OpenAIRequestError(InputError, code="openai_unsupported", http_status=400):
    """A request the OpenAI-compatible endpoint does not serve (n > 1, tools, logprobs, a malformed field)."""


@router.get("/models", operation_id="openai_list_models")
async def list_models(services: ServicesDep) -> dict[str, Any]:
    """The models that generate text, in OpenAI's list shape (id = the model id)."""
    served = await run_in_threadpool(services.catalog.list)
    data = [{"id": m.row.id, "object": "model", "created": int(m.row.created_at.timestamp()),
             "owned_by": m.row.owner or "proofmarket", "name": m.row.name, "price_per_1k_tokens": str(m.price_atomic)}
            for m in served if spec(m.system).generates]
    return {"object": "list", "data": data}


@router.post("/chat/completions", operation_id="openai_chat_completions")
async def chat_completions(request: Request, services: ServicesDep,
                           body: Annotated[dict[str, Any], Body(description="OpenAI's chat completion request")]
                           ) -> Any:
    """A chat completion from an attested model (its answer carries the attested bundle)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not 0 < len(messages) <= MAX_MESSAGES or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise OpenAIRequestError(f"messages must be a list of 1 to {MAX_MESSAGES} {{role, content}} objects "
                                 "(text content)", param="messages")
    model_id = _model(body)
    system = await run_in_threadpool(_system_of, services, model_id)
    prompt = await run_in_threadpool(system.chat_prompt, model_id,
                                     [{"role": m["role"], "content": m["content"]} for m in messages])
    return await _complete(request, services, body, model_id, prompt, chat=True)


@router.post("/completions", operation_id="openai_completions")
async def completions(request: Request, services: ServicesDep,
                      body: Annotated[dict[str, Any], Body(description="OpenAI's completion request")]) -> Any:
    """A text completion from an attested model (its answer carries the attested bundle)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise OpenAIRequestError("prompt must be a string", param="prompt")
    return await _complete(request, services, body, _model(body), prompt, chat=False)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIRequestError("model is required (an id from GET /openai/v1/models)", param="model")
    for name in UNSUPPORTED:
        if body.get(name):
            raise OpenAIRequestError(f"{name} is not supported by this endpoint", param=name)
    if body.get("n", 1) != 1:
        raise OpenAIRequestError("n must be 1 (one attested generation per call)", param="n")
    return model


def _system_of(services: NodeServices, model_id: str) -> Any:
    served = services.catalog.sellable(model_id)
    system = services.systems.get(served.system)
    if not spec(served.system).generates or not hasattr(system, "chat_prompt"):
        raise OpenAIRequestError(f"model {model_id} does not generate text", param="model")
    return system


async def _complete(request: Request, services: NodeServices, body: dict[str, Any], model_id: str, prompt: str,
                    *, chat: bool) -> Any:
    doc: dict[str, Any] = {"prompt": prompt}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        doc["max_tokens"] = max_tokens
    for name in ("temperature", "seed"):
        if body.get(name) is not None:
            doc[name] = body[name]
    offer, system = await run_in_threadpool(offer_for, services, model_id, doc, base_url(request, services.settings))
    try:
        call = await run_in_threadpool(open_call, services, offer, system, request.headers, doc)
    except PaymentRequired as exc:  # OpenAI clients pay with a key: without one the call is unauthorised
        if api_key_of(request.headers) is None:
            unauthorized = Unauthorized("this model is paid: send an API key (Authorization: Bearer pmk_..., see "
                                        "POST /v1/keys) or pay over x402 (the PAYMENT-REQUIRED header's terms: "
                                        "upto charges the tokens generated)")
            unauthorized.headers = dict(getattr(exc, "headers", None) or {})  # an x402 client pays these terms
            raise unauthorized from exc
        raise
    created, ident = int(time.time()), f"{'chatcmpl' if chat else 'cmpl'}-{call.job.id}"
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return EventSourceResponse(_chunks(services, call, ident, created, model_id, chat, include_usage),
                                   sep="\n", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    done = await answer(services, call)
    if isinstance(done, JSONResponse):
        return done
    answered, headers = done
    base = base_url(request, services.settings)
    result = _completion(answered, ident, created, model_id, chat)
    result["proofmarket"] = _provenance(answered, base)
    return JSONResponse(_typed(result, chat, streamed=False),
                        headers={**headers, "X-Proofmarket-Bundle": str(answered["bundle_cid"])})


def _completion(answer: dict[str, Any], ident: str, created: int, model_id: str, chat: bool) -> dict[str, Any]:
    finish = FINISH.get(str(answer.get("finish_reason")), "stop")
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
    if chat:
        choice["message"] = {"role": "assistant", "content": answer["text"]}
    else:
        choice["text"] = answer["text"]
    return {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": model_id, "choices": [choice], "usage": _usage(answer)}


def _typed(doc: dict[str, Any], chat: bool, *, streamed: bool) -> dict[str, Any]:
    """``doc`` as the ``openai`` package's own type of this answer has it (a field out of place is an error here,
    not a client's surprise); the ``proofmarket`` extension rides along."""
    from openai.types import Completion
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    kind = (ChatCompletionChunk if streamed else ChatCompletion) if chat else Completion
    typed: dict[str, Any] = kind.model_validate(doc).model_dump(mode="json", exclude_unset=True)
    return typed


def _usage(answer: dict[str, Any]) -> dict[str, int]:
    usage = answer.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _provenance(answer: dict[str, Any], base: str) -> dict[str, Any]:
    cid = answer["bundle_cid"]
    return {"bundle_cid": cid, "bundle_url": f"{base}/v1/proofs/{cid}", "job_id": answer["job_id"],
            "access_token": answer.get("access_token"), "receipt": answer.get("receipt"),
            "payment": answer.get("payment"), "guarantee": answer.get("guarantee"), "mode": answer.get("mode")}


async def _chunks(services: NodeServices, call: Any, ident: str, created: int, model_id: str, chat: bool,
                  include_usage: bool) -> AsyncIterator[dict[str, str]]:
    obj = "chat.completion.chunk" if chat else "text_completion"

    def sent(doc: dict[str, Any]) -> dict[str, str]:
        return {"data": json.dumps(doc, separators=(",", ":"))}  # framed by the response's sep

    def chunk(delta: dict[str, Any] | str, finish: str | None = None, **extra: Any) -> dict[str, str]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta
        doc = {"id": ident, "object": obj, "created": created, "model": model_id, "choices": [choice], **extra}
        return sent(_typed(doc, chat, streamed=True))

    if chat:
        yield chunk({"role": "assistant", "content": ""})
    async for event, data in event_items(services, call):
        if event == "token":
            text = str(data.get("text", ""))
            yield chunk({"content": text} if chat else text)
        elif event == "result":
            finish = FINISH.get(str(data.get("finish_reason")), "stop")
            yield chunk({} if chat else "", finish, proofmarket={"bundle_cid": data["bundle_cid"],
                                                                 "job_id": data["job_id"],
                                                                 "access_token": data.get("access_token")})
            if include_usage:
                doc = {"id": ident, "object": obj, "created": created, "model": model_id, "choices": [],
                       "usage": _usage(data)}
                yield sent(_typed(doc, chat, streamed=True))
        elif event == "pending":
            yield sent({"proofmarket": {"pending": data}})
        elif event == "error":
            err = ProofMarketError(str(data.get("message", "")))
            err.code, err.http_status = str(data.get("code")), int(data.get("status", 500))
            yield {"data": bytes(error_response(err, openai=True).body).decode()}
    yield {"data": "[DONE]"}
