"""One error shape for every response: ``{"error": {"code", "message", "details"}}`` with the tree's status.

``handle_error`` is the one handler: foreign exceptions (Starlette, FastAPI validation, anything else) are
translated into the tree (``proofmarket.core.errors``: ``RequestInvalid``, ``RouteNotFound``, ``MethodNotAllowed``,
``InternalError``), then rendered. The error's ``headers`` (e.g. x402 ``PAYMENT-REQUIRED`` on a 402,
``WWW-Authenticate`` on a 401) are sent with the response.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from proofmarket.core.errors import (
    InternalError,
    MethodNotAllowed,
    ProofMarketError,
    RequestInvalid,
    RouteNotFound,
    UsageError,
)

log = logging.getLogger("proofmarket.api")


def as_error(exc: BaseException) -> ProofMarketError:
    """Translate any exception into the tree."""
    if isinstance(exc, ProofMarketError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _invalid(exc)
    if isinstance(exc, StarletteHTTPException):
        return _http(exc)
    return InternalError("internal error: the node could not answer this request")


OPENAI_PREFIX = "/openai/"
OPENAI_TYPES = {401: "authentication_error", 402: "insufficient_quota", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}


def error_response(err: ProofMarketError, *, openai: bool = False) -> JSONResponse:
    """The one error shape, ``{"error": {code, message, details}}``; under /openai/ OpenAI's, ``{"error": {message,
    type, param, code}}`` (the stable code as ``code``)."""
    body: dict[str, Any]
    if openai:
        kind = OPENAI_TYPES.get(err.http_status, "api_error" if err.http_status >= 500 else "invalid_request_error")
        param = err.details.get("param")
        body = {"error": {"message": err.message, "type": kind, "param": param if isinstance(param, str) else None,
                          "code": err.code}}
    else:
        body = {"error": {"code": err.code, "message": err.message, "details": _jsonable(err.details)}}
    return JSONResponse(body, status_code=err.http_status, headers=dict(err.headers) or None)


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    err = as_error(exc)
    if err.http_status >= 500:
        log.error("%s %s -> %s: %s", request.method, request.url.path, err.code, err.message,
                  exc_info=exc if isinstance(err, InternalError) else None)
    return error_response(err, openai=request.url.path.startswith(OPENAI_PREFIX))


MAX_PUBLIC_MESSAGE = 300
# an absolute file path of two or more parts (not an API route), or a Python traceback
_PATH = re.compile(r"(?:^|(?<=[\s'\"(\[=:,]))/(?!v1/)[\w.@+\-]+/[\w.@+\-/]*")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \"", re.MULTILINE)


def public_message(code: str, message: str | None) -> str:
    """The message of a job (or escrow request) error as the public sees it: one sentence of the node's own,
    never a traceback, a temp path or a multi-line dump (the detail stays in the node's database and log)."""
    text = (message or "").strip()
    if not text or "\n" in text or _TRACEBACK.search(text) or _PATH.search(text) or len(text) > MAX_PUBLIC_MESSAGE:
        return f"the job failed ({code}); the node's log has the details"
    return text


def _invalid(exc: RequestValidationError) -> RequestInvalid:
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
              for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"])
    return RequestInvalid(f"the request is not valid: {where}: {first['msg']}", errors=errors)


def _http(exc: StarletteHTTPException) -> ProofMarketError:
    detail = str(exc.detail)
    if exc.status_code == 404:
        return RouteNotFound(f"no such endpoint ({detail.lower()})")
    if exc.status_code == 405:
        err: ProofMarketError = MethodNotAllowed("this endpoint does not take this HTTP method")
    else:
        err = UsageError(detail)
        err.code, err.http_status = f"http_{exc.status_code}", exc.status_code
    if exc.headers:
        err.headers = dict(exc.headers)
    return err


def _jsonable(details: dict[str, Any]) -> Any:
    try:
        return jsonable_encoder(details)
    except Exception:  # details are best effort: never fail the error response itself
        return {k: str(v) for k, v in details.items()}
