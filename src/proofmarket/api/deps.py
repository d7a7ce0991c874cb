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
