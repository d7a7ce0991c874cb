"""The FastAPI app of a proofmarket node.

``create_app(settings, workspace=None, payments=None)`` builds everything the node needs: the database
(migrated), the workspace (artifact store, prover), the job queue (prover processes, compile lane, with
the restart rule applied at once), the payment port, and the metrics registry. Workers start with the
app's lifespan and stop with it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from proofmarket import __version__
from proofmarket.api.access import AccessTokens
from proofmarket.api.catalog import Catalog
from proofmarket.api.deps import NodeServices
from proofmarket.api.errors import handle_error
from proofmarket.api.middleware import BodyLimit, RequestMetrics
from proofmarket.api.routers import (
    artifacts,
    court,
    dashboard,
    earnings,
    generate,
    infer,
    jobs,
    meta,
    models,
    proofs,
    requests,
    verify,
    webapp,
)
from proofmarket.api.security import check_admin_token
from proofmarket.calls import JobMetrics, JobRunner, JobService, LocalJobQueue
from proofmarket.calls.cache import ProofCache
from proofmarket.calls.queue import JobQueue
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.db import Database, JobRepo, ModelRepo, ProofCacheRepo
from proofmarket.payments.port import FreeAccess, PaymentPort
from proofmarket.systems.catalog import ModelCatalog
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.worker import ProofWorker
from proofmarket.systems.workspace import Workspace

if TYPE_CHECKING:
    from proofmarket.market.listings import Listings

log = logging.getLogger("proofmarket.api")

DESCRIPTION = """Verifiable ML inference: every output comes with a zero-knowledge proof that it came from the
committed model on the committed input. Errors are `{"error": {"code", "message", "details"}}` with a
stable `code`."""


def create_app(settings: Settings | None = None, workspace: Workspace | None = None,
               payments: PaymentPort | None = None) -> FastAPI:
    settings = settings or Settings()
    services = build_services(settings, workspace, payments)
    app = FastAPI(title="proofmarket node", version=__version__, description=DESCRIPTION,
                  lifespan=functools.partial(_lifespan, services=services))
    app.state.services = services
    for router in (models.router, infer.router, generate.router, jobs.router, proofs.router, verify.router,
                   artifacts.router, requests.router, court.router, earnings.router, meta.router, dashboard.router,
                   webapp.router):
        app.include_router(router)
    for exc_type in (ProofMarketError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle_error)
    app.add_middleware(BodyLimit, limit_for=functools.partial(_body_limit, settings))
    app.add_middleware(RequestMetrics, registry=services.registry)
    origins = [o.strip() for o in (settings.cors_origins or "").split(",") if o.strip()]
    if origins:  # apps on other origins (a wallet app): what they may send and read
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "Idempotency-Key", "X-Job-Token",
                                          "PAYMENT-SIGNATURE", "X-PAYMENT", "X-Address", "X-Address-Time",
                                          "X-Address-Nonce", "X-Address-Signature"],
                           expose_headers=["PAYMENT-REQUIRED", "PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE", "Location"],
                           max_age=600)
    return app


def build_services(settings: Settings, workspace: Workspace | None, payments: PaymentPort | None) -> NodeServices:
    check_admin_token(settings)
    tokens = AccessTokens.for_node(settings)
    db = Database(settings.db_url)
    db.migrate()
    ws = workspace or Workspace(settings)
    registry = CollectorRegistry()
    runner, payments = build_runner(settings, db, ws, registry, payments)
    job_repo, model_repo = runner.jobs, runner.models
    queue = _queue(settings, runner, job_repo, ws)
    listings = _listings(settings, ws, payments)
    catalog = Catalog(model_repo, ModelCatalog(ws.store), _srs_check(payments), listings)
    return NodeServices(settings=settings, db=db, workspace=ws, catalog=catalog,
                        jobs=JobService(job_repo, queue, _cache(settings, db, ws, runner)), queue=queue,
                        payments=payments, registry=registry,
                        owns_workspace=workspace is None, tokens=tokens,
                        attested=_attested(settings, ws, payments, registry))


def _attested(settings: Settings, ws: Workspace, payments: PaymentPort, registry: CollectorRegistry) -> Any:
    """The attested system: signs with the receipt key when payments are on (one node identity), else with
    PROOFMARKET_NODE_KEY or the node key kept in HOME; the EIP-712 domain names the payment chain (or the devnet)."""
    from proofmarket.systems.attested.signer import DEVNET_CHAIN_ID, node_signer
    from proofmarket.systems.attested.system import AttestedSystem

    signer = getattr(payments, "node", None) or node_signer(settings)
    chain_id = (payments.describe().get("chain") or {}).get("chain_id") or DEVNET_CHAIN_ID
    from proofmarket.calls.metrics import AttestedMetrics

    system = AttestedSystem(ws.store, settings.jobs_dir, signer, int(chain_id))
    system.metrics = AttestedMetrics(registry)
    return system


def _listings(settings: Settings, ws: Workspace, payments: PaymentPort) -> Listings | None:
    """The registry's terms (price, active, owner, verifier, x402 splitter) when a market is deployed on the
    node's chain (``PROOFMARKET_REGISTRY_TERMS``: auto, on, off)."""
    if settings.registry_terms == "off":
        return None
    from proofmarket.market import Market
    from proofmarket.market.listings import Listings

    try:
        market = Market.open(workspace=ws)
    except ProofMarketError as exc:
        if settings.registry_terms == "on":
            raise
        log.info("selling on the node's own terms (no registry): %s", exc.message)
        return None
    listings = Listings(market, default_owner=settings.model_owner, poll_s=settings.escrow_poll_s)
    on_split = getattr(payments, "on_split", False)
    if on_split is None:  # the x402 port: release each listing's splitter after a settlement
        payments.on_split = listings.release_later  # type: ignore[attr-defined]
        payments.on_validate = listings.validate_later  # type: ignore[attr-defined]
    return listings


def _payments(settings: Settings, ws: Workspace, model_repo: ModelRepo) -> PaymentPort:
    """Payments off: free calls. On: x402 through the gate (``payments/x402_rail.py``), paid to the model's owner."""
    if settings.payments == "off":
        return FreeAccess()
    from proofmarket.payments.x402_rail import build_x402  # web3 and the x402 SDK load only when payments are on

    def owner_of(model_id: str) -> str | None:
        row = model_repo.get(model_id)
        return row.owner if row is not None else None

    return build_x402(settings, ws.store, owner_of)


def _srs_check(payments: PaymentPort) -> Callable[[str, ModelManifest], None]:
    """A node paid off the devnet refuses dev-SRS models (at load: ``catalog.register``, and when serving)."""
    from proofmarket.systems.ezkl.srs import check_servable

    chain_id = (payments.describe().get("chain") or {}).get("chain_id")

    def check(model_id: str, manifest: ModelManifest) -> None:
        check_servable(manifest.srs.sha256, model_id, int(chain_id) if chain_id is not None else None)

    return check


def _cache(settings: Settings, db: Database, ws: Workspace, runner: JobRunner) -> ProofCache | None:
    """The node's side of the proof cache: jobs looked up when submitted, hits and misses in /metrics."""
    if not settings.proof_cache_size:
        return None
    return ProofCache(ProofCacheRepo(db, settings.proof_cache_size), ws.store, runner.jobs, runner.metrics.cache)


def _queue(settings: Settings, runner: JobRunner, job_repo: JobRepo, ws: Workspace) -> JobQueue:
    """The local queue (prover processes in the node) or the celery queue (workers over Redis; checked here:
    an unreachable Redis stops the node with ``queue_unavailable``)."""
    if settings.queue == "celery":
        from proofmarket.calls.celery_queue import CeleryJobQueue
        from proofmarket.db import LeaseRepo

        celery = CeleryJobQueue(settings, job_repo, runner)
        celery.leases = LeaseRepo(job_repo.db)
        celery.recover()
        return celery
    local = LocalJobQueue(runner, job_repo, _provers(settings, ws))
    local.recover()
    return local


def build_runner(settings: Settings, db: Database, ws: Workspace, registry: CollectorRegistry,
                 payments: PaymentPort | None = None) -> tuple[JobRunner, PaymentPort]:
    """The job runner (and its payment port) of a node or of a 'proofmarket worker' process."""
    model_repo = ModelRepo(db)
    payments = payments or _payments(settings, ws, model_repo)
    cache = ProofCacheRepo(db, settings.proof_cache_size) if settings.proof_cache_size else None
    return JobRunner(settings, JobRepo(db), model_repo, ws.store, payments, JobMetrics(registry), cache), payments


def _provers(settings: Settings, ws: Workspace) -> list[EzklProver]:
    return [EzklProver(ws.store, settings.jobs_dir, ProofWorker(timeout_s=settings.proof_timeout_s))
            for _ in range(settings.prover_workers)]


def _body_limit(settings: Settings, scope: Scope) -> int:
    upload = scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/v1/models"
    return settings.max_upload_bytes if upload else settings.max_request_bytes


@asynccontextmanager
async def _lifespan(app: FastAPI, services: NodeServices) -> AsyncIterator[None]:
    services.queue.start()
    try:
        yield
    finally:
        services.close()
