"""Two pure ASGI middlewares: request body limits (413 ``body_too_large``, 400 ``json_too_deep``) and request
metrics.

The body limit answers at once when Content-Length is over the limit. A JSON body (any body but a multipart
upload or an octet stream) is read whole first, within the limit, and its nesting depth checked without
recursion (``proofmarket.core.jsonlimits``) before the app parses it: deep nesting is how one request could crash
the node's JSON parser. For a multipart upload without a length (chunked) it counts the bytes as the app reads
them, stops reading past the limit, and replaces whatever the app answers with the 413.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proofmarket.api.errors import error_response
from proofmarket.core import jsonlimits
from proofmarket.core.errors import BodyTooLarge, JsonTooDeep

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await error_response(_too_large(limit, declared))(scope, receive, send)
            return
        if not _json_body(scope):
            await _Limited(self.app, limit)(scope, receive, send)
            return
        try:
            body, rest = await _read_body(receive, limit)
            jsonlimits.check(body, max_bytes=limit, what="the request body")
        except (BodyTooLarge, JsonTooDeep) as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, _replay(body, rest, receive), send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, list[Message]]:
    """The whole body (raises past ``limit``), and a disconnect that came instead of its end, if any."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, None)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replay(body: bytes, rest: list[Message], receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if rest:
            return rest.pop(0)
        return await receive()

    return replayed


def _json_body(scope: Scope) -> bool:
    """Bodies the app may parse as JSON: every one but multipart uploads and octet streams."""
    if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return False
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            return not (kind.startswith(b"multipart/") or kind == b"application/octet-stream")
    return True


class _Limited:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit, self.seen, self.tripped, self.replaced = app, limit, 0, False, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.seen += len(message.get("body", b""))
                if self.seen > self.limit:
                    self.tripped = True
                    raise _too_large(self.limit, None)
            return message

        async def guarded_send(message: Message) -> None:
            if not self.tripped:
                await send(message)
            elif not self.replaced and message["type"] == "http.response.start":
                self.replaced = True
                await error_response(_too_large(self.limit, None))(scope, receive, send)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not self.tripped:
                raise
            if not self.replaced:
                self.replaced = True
                await error_response(_too_large(self.limit, None))(scope, receive, send)


def _too_large(limit: int, size: int | None) -> BodyTooLarge:
    said = f" ({size} bytes)" if size is not None else ""
    return BodyTooLarge(f"the request body{said} is over this endpoint's limit of {limit} bytes", limit=limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestMetrics:
    """Counts requests by method, route template and status; times them by route."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("proofmarket_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("proofmarket_http_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, watching_send)
        finally:
            route = _route(scope)
            self.requests.labels(scope["method"], route, str(status[0])).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestIds:
    """Every request gets an id: the client's ``X-Request-ID`` (when sane) or a new one, in the logs of everything
    it causes (``core.logs.REQUEST_ID``) and returned as ``X-Request-ID`` on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from proofmarket.core.logs import REQUEST_ID, request_id_from

        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = request_id_from(given)
        token = REQUEST_ID.set(rid)

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            REQUEST_ID.reset(token)
