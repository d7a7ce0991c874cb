"""The FastAPI app of a proofmarket node.

``create_app(settings, workspace=None, payments=None, rails=())`` asks the composition root
(``node.compose.build_node``) for the node's services, mounts the routers on them, and starts the node's
background services in their order with the app's lifespan (``node/supervisor.py``; the escrow and court watchers
last), stopping them in the reverse order with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from proofmarket import __version__
from proofmarket.api import openapi_doc
from proofmarket.api.errors import handle_error
from proofmarket.api.middleware import BodyLimit, RequestIds, RequestMetrics
from proofmarket.api.proxies import TrustedProxies, networks
from proofmarket.api.rail_host import ApiRailHost
from proofmarket.api.ratelimit import Limiter, RateLimit
from proofmarket.api.routers import (
    artifacts,
    auth,
    court,
    dashboard,
    discovery,
    earnings,
    generate,
    infer,
    jobs,
    ledger,
    meta,
    models,
    openai_compat,
    proofs,
    requests,
    verify,
    webapp,
    webhooks,
)
from proofmarket.api.security import check_admin_token
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.intake.court import CourtService
from proofmarket.intake.escrow import EscrowService
from proofmarket.mcp_tools.serve import McpEndpoint, app_http
from proofmarket.mcp_tools.server import ToolServer
from proofmarket.node.compose import build_node, rail_routers
from proofmarket.node.services import NodeServices
from proofmarket.payments.port import Rail
from proofmarket.systems.workspace import Workspace

log = logging.getLogger("proofmarket.api")

DESCRIPTION = """Verifiable ML inference: every output comes with a zero-knowledge proof that it came from the
committed model on the committed input. Errors are `{"error": {"code", "message", "details"}}` with a
stable `code`."""


def create_app(settings: Settings | None = None, workspace: Workspace | None = None,
               payments: Rail | None = None, *, rails: Sequence[Rail] = (),
               services: NodeServices | None = None) -> FastAPI:
    """The HTTP face of a node: routers over the services ``node.compose.build_node`` builds (or ``services``)."""
    settings = services.settings if services is not None else (settings or Settings())
    check_admin_token(settings)
    services = services or build_node(settings, workspace, payments, rails=rails)
    app = FastAPI(title="proofmarket node", version=__version__, description=DESCRIPTION,
                  lifespan=functools.partial(_lifespan, services=services), docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.rail_host = ApiRailHost  # what the rails' own routes reach the node through
    for router in (models.router, models.policy_router, infer.router, generate.router, jobs.router,
                   jobs.calls_router, proofs.router, verify.router,
                   artifacts.router, requests.router, court.router, earnings.router, *rail_routers(services.rails),
                   ledger.router,
                   openai_compat.router, webhooks.router, meta.router, discovery.router, auth.router,
                   dashboard.router,
                   webapp.router):
        app.include_router(router)
    app.state.mcp = _mcp_route(app)
    openapi_doc.install(app, functools.partial(_served_examples, services))  # /docs and /redoc: routers/webapp.py
    for exc_type in (ProofMarketError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle_error)
    app.add_middleware(BodyLimit, limit_for=functools.partial(_body_limit, settings))
    app.add_middleware(RequestMetrics, registry=services.registry)
    node_rails = services.rails
    app.add_middleware(RateLimit, limiter=Limiter(settings),
                       payer_of=lambda h: node_rails.select(h).payer_of(h))
    # outermost: the client's address and scheme by the one rule (trusted proxies only), for all inside
    app.add_middleware(TrustedProxies, proxies=networks(settings.api.trusted_proxies))
    app.add_middleware(RequestIds)  # an id for every request, in its logs and on its answer (X-Request-ID)
    origins = [o.strip() for o in (settings.api.cors_origins or "").split(",") if o.strip()]
    if origins:  # apps on other origins (a wallet app): what they may send and read
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Content-Type", "Authorization", "Idempotency-Key", "X-Job-Token",
                                          "X-Siwe-Message", "X-Siwe-Signature",
                                          "PAYMENT-SIGNATURE", "X-PAYMENT", "X-Address", "X-Address-Time",
                                          "X-Address-Nonce", "X-Address-Signature"],
                           expose_headers=["PAYMENT-REQUIRED", "PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE", "Location"],
                           max_age=600)
    return app


def _served_examples(services: NodeServices) -> dict[str, Any]:
    """The inference route's examples in /openapi.json: each served proven model's real input sizes."""
    from proofmarket.api.views import model_public

    try:
        return openapi_doc.model_examples([model_public(m).model_dump() for m in services.catalog.list("active")])
    except Exception:  # the document is still served, with the generic examples
        log.warning("could not list the models' examples for /openapi.json", exc_info=True)
        return {}


def _body_limit(settings: Settings, scope: Scope) -> int:
    upload = scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/v1/models"
    return settings.limits.max_upload_bytes if upload else settings.limits.max_request_bytes


def _mcp_route(app: FastAPI) -> McpEndpoint:
    """``/mcp``: the catalogue as MCP tools over streamable HTTP, each call entering this app as the HTTP call it is
    (``proofmarket.mcp_tools``)."""
    from starlette.routing import Route

    endpoint = McpEndpoint(ToolServer(app_http(app)))
    app.router.routes.append(Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"]))
    return endpoint


_ROUTES_BUILT = threading.Lock()


def _build_routes(app: FastAPI) -> None:
    """Build every route's request handling now, one app at a time. FastAPI builds it lazily at the first request
    that walks a router, analysing each endpoint's parameters (whose ``Query()``/``Path()`` objects are shared by
    every app that includes the router): two apps of one process doing it at once raced on those objects, and a
    first request answered 500."""
    def walk(routes: list[Any]) -> None:
        for route in routes:
            candidates = getattr(route, "effective_candidates", None)
            if callable(candidates):
                candidates()
                route.effective_low_priority_routes()
                walk(list(route.original_router.routes))

    with _ROUTES_BUILT:
        walk(list(app.router.routes))


def _watchers(app: FastAPI, services: NodeServices) -> tuple[EscrowService | None, CourtService | None]:
    """The chain watchers the node runs, built once per app (``app.state.escrow``, ``app.state.court``: None when
    off or nothing is deployed; one set beforehand, e.g. a test's own, is kept): the routers of ``/v1/requests``
    and ``/v1/court`` read them there."""
    for name, build in (("escrow", services.build_escrow), ("court", services.build_court)):
        if not hasattr(app.state, name):
            setattr(app.state, name, build())
    return app.state.escrow, app.state.court


@asynccontextmanager
async def _lifespan(app: FastAPI, services: NodeServices) -> AsyncIterator[None]:
    _build_routes(app)
    # the composition root starts every background loop, in order (node/supervisor.py); the watchers are built
    # first (they ask the chain for their deployment) and run last, once the engine they submit to runs
    try:
        watchers = await asyncio.to_thread(_watchers, app, services)
        await asyncio.to_thread(services.start_background, *watchers)
        async with app.state.mcp.running():
            yield
    finally:
        services.close()
