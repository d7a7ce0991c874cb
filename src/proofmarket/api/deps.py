"""The typed dependencies routers take: the node's services (built by ``node.compose``), headers, the base URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from proofmarket.core.settings import Settings
from proofmarket.node.services import NodeServices


def get_services(request: Request) -> NodeServices:
    services: NodeServices = request.app.state.services
    return services


ServicesDep = Annotated[NodeServices, Depends(get_services)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="a retried request with the same key returns the same job (printable ASCII, up to 255)")]


def base_url(request: Request, settings: Settings) -> str:
    return (settings.api.public_url or str(request.base_url)).rstrip("/")


def node_url(request: Request, settings: Settings) -> str:
    """The URL a signature is checked against: ``PROOFMARKET_PUBLIC_URL``, else (a devnet on loopback) the address of
    the socket the request reached, never the ``Host`` header the client chooses."""
    if settings.api.public_url:
        return settings.api.public_url.rstrip("/")
    server = request.scope.get("server")
    if not server:
        return str(request.base_url).rstrip("/")
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in str(host) else str(host)
    scheme = request.scope.get("scheme", "http")
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + ("" if port in (None, default) else f":{port}")
