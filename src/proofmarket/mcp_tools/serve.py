"""Where the tools are served: over stdio (``proofmarket mcp``, an agent's local process), over streamable HTTP
(``proofmarket mcp --port``, and ``/mcp`` on every node), each forwarding to a node.

    url_http(base_url)        the node at a URL (the CLI)
    app_http(app)             the node's own app, in process (its ``/mcp`` route): each call enters the node as an
                              HTTP request from the MCP caller's address, so rate limits and logs see the caller
    McpEndpoint(tools)        the ASGI endpoint of streamable HTTP (stateless, JSON answers); ``running()`` is its
                              lifespan (a fresh session manager each time the app starts)
    serve_stdio(tools)        one client on stdin/stdout
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from proofmarket.mcp_tools.server import Caller, HttpFor, ToolServer

NODE_TIMEOUT_S = 900.0


def url_http(base_url: str, timeout_s: float = NODE_TIMEOUT_S) -> HttpFor:
    def http_for(caller: Caller) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    return http_for


def app_http(app: Any, timeout_s: float = NODE_TIMEOUT_S) -> HttpFor:
    def http_for(caller: Caller) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=caller.address or ("127.0.0.1", 0))
        return httpx.AsyncClient(transport=transport, base_url=(caller.base_url or "http://node").rstrip("/"),
                                 timeout=timeout_s)

    return http_for


def local_only(port: int) -> TransportSecuritySettings:
    """A server on this machine answers only requests for this machine (DNS rebinding: a web page cannot reach it
    through a name it controls)."""
    hosts = [f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=[f"http://{h}" for h in hosts])


class McpEndpoint:
    """Streamable HTTP for ``tools`` (an ASGI app: mount it as a route)."""

    def __init__(self, tools: ToolServer, security: TransportSecuritySettings | None = None) -> None:
        self.tools, self.security = tools, security
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        manager = StreamableHTTPSessionManager(self.tools.server, json_response=True, stateless=True,
                                               security_settings=self.security)
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._manager is None:  # the app's lifespan has not started it (or stopped it)
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body",
                        "body": b'{"error": {"code": "unavailable", "message": "the MCP endpoint is not running"}}'})
            return
        await self._manager.handle_request(scope, receive, send)


async def serve_stdio(tools: ToolServer) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await tools.server.run(read, write, tools.server.create_initialization_options())


def http_app(tools: ToolServer, port: int) -> Any:
    """A Starlette app serving ``/mcp`` alone (``proofmarket mcp --port``), for this machine only."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    endpoint = McpEndpoint(tools, local_only(port))

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with endpoint.running():
            yield

    return Starlette(routes=[Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"])], lifespan=lifespan)
