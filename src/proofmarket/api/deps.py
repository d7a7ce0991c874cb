"""The node's services, built once per app, and the typed dependencies routers take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from prometheus_client import CollectorRegistry

from proofmarket.api.access import AccessTokens
from proofmarket.api.catalog import Catalog
from proofmarket.calls import JobService
from proofmarket.calls.queue import JobQueue
from proofmarket.core.settings import Settings
from proofmarket.db import Database
from proofmarket.payments.port import PaymentPort
from proofmarket.systems.workspace import Workspace


@dataclass
class NodeServices:
    settings: Settings
    db: Database
    workspace: Workspace
    catalog: Catalog
    jobs: JobService
    queue: JobQueue
    payments: PaymentPort
    registry: CollectorRegistry
    owns_workspace: bool
    tokens: AccessTokens
    attested: Any = None  # systems.attested.system.AttestedSystem: attested models' runtime and signer

    def close(self) -> None:
        self.queue.close()
        if self.catalog.listings is not None:
            self.catalog.listings.close()
        if self.owns_workspace:
            self.workspace.close()
        self.db.close()


def get_services(request: Request) -> NodeServices:
    services: NodeServices = request.app.state.services
    return services


ServicesDep = Annotated[NodeServices, Depends(get_services)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="a retried request with the same key returns the same job (printable ASCII, up to 255)")]


def base_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")
