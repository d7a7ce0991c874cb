"""Discovery and operations: /.well-known/ai-service.json, /health, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proofmarket import __version__
from proofmarket.api.deps import ServicesDep, base_url, node_url
from proofmarket.api.schemas import Health, Price, ServiceManifest, ServiceModel, ServiceState
from proofmarket.api.security import IsAdminDep
from proofmarket.api.signed import describe
from proofmarket.api.views import registry_listing
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.profiles import ChainProfile
from proofmarket.core.settings import Settings
from proofmarket.intake.callback_terms import CallbackRule
from proofmarket.marketplace.catalog import ServedModel
from proofmarket.node.services import NodeServices
from proofmarket.systems import ATTESTED_SYSTEM, PROVEN_SYSTEM, spec_of
from proofmarket.systems.documents import BUNDLE_FORMAT
from proofmarket.systems.ezkl.bundle import BUNDLE_VERSION
from proofmarket.systems.registry import specs

router = APIRouter(tags=["meta"])
ENDPOINTS = {
    "models": "/v1/models", "model": "/v1/models/{model_id}", "infer": "/v1/models/{model_id}/infer",
    "generate": "/v1/models/{model_id}/generate",
    "upload": "/v1/models", "job": "/v1/jobs/{job_id}", "proof": "/v1/proofs/{cid}", "verify": "/v1/verify",
    "artifact": "/v1/artifacts/{cid}", "earnings": "/v1/earnings?address={address}", "health": "/health",
    "channels": "/v1/channels?payer={address}", "channel_refund": "/v1/channels/refund",
    "metrics": "/metrics", "mcp": "/mcp",
}


@router.get("/.well-known/ai-service.json", operation_id="get_service_manifest", response_model=ServiceManifest)
def service_manifest(request: Request, services: ServicesDep) -> ServiceManifest:
    """What this node offers: models and prices, endpoints, chain, payment (x402) support, proof format."""
    base = base_url(request, services.settings)
    payments = {**services.payments.describe(),
                "rails": {r.name: r.describe() for r in services.rails.all() if r is not services.payments}}
    return ServiceManifest(
        name="proofmarket node",
        description="verifiable ML inference: proven models answer with a zero-knowledge proof (EZKL, Halo2/KZG); "
                    "attested models (too large to prove) with a signed, re-executable attestation",
        software=f"proofmarket {__version__}", base_url=base, openapi=f"{base}/openapi.json", docs=f"{base}/docs",
        endpoints={k: f"{base}{v}" for k, v in ENDPOINTS.items()},
        payments=payments, chain=_chain(services, payments.get("chain")),
        proofs={"system": PROVEN_SYSTEM, "bundle_format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION,
                "verify": f"{base}/v1/verify",
                "modes": _modes()},
        models=[_service_model(m, base) for m in services.catalog.list()],
        address_signature=describe(services, node_url(request, services.settings)),
    )


def _modes() -> dict[str, dict[str, str]]:
    """Every registered proof system by its mode: its id and what its bundles guarantee."""
    modes: dict[str, dict[str, str]] = {}
    for s in specs():  # a mode's first system (the built-in's; a sliced model is proven too)
        modes.setdefault(s.mode, {"system": s.system, "guarantee": s.guarantee})
    if ATTESTED_SYSTEM in {s.system for s in specs()}:
        modes["attested"]["recheck"] = "proofmarket verify BUNDLE --reexecute"
    return modes


def _service_model(m: ServedModel, base: str) -> ServiceModel:
    generates = spec_of(m.manifest).route(m.manifest) == "generate"
    link = f"{base}/v1/models/{m.row.id}/" + ("generate" if generates else "infer")
    return ServiceModel(id=m.row.id, name=m.row.name, mode=m.mode, price=Price.of(m.price_atomic),
                        privacy=m.manifest.privacy["name"], infer=None if generates else link,
                        generate=link if generates else None,
                        details=f"{base}/v1/models/{m.row.id}", active=m.active, registry=registry_listing(m))


@router.get("/.well-known/agent-registration.json", operation_id="get_agent_registration")
def agent_registration(request: Request, services: ServicesDep) -> JSONResponse:
    """The node's ERC-8004 registration file (type, name, services, x402Support, registrations, supportedTrust);
    ``registrations`` names the agent id once the prover account registered on the market's IdentityRegistry."""
    from proofmarket.onchain.agent import registration_file

    base = base_url(request, services.settings)
    agent_id = registry = None
    listings = services.catalog.listings
    market = listings.market if listings is not None else None
    if market is not None:
        try:
            registries = market.erc8004
            if registries is not None:
                agent_id = market.agent_id()
                registry = registries.identity.registry_id()
        except ProofMarketError:  # the chain is away: the file without its registration
            agent_id = registry = None
    models = [{"id": m.row.id, "name": m.row.name, "mode": m.mode, "verifiable": m.verifiable()}
              for m in services.catalog.list()]
    doc = registration_file(name=f"proofmarket node at {base}", base_url=base,
                            x402=bool(services.payments.describe().get("x402")), models=models, agent_id=agent_id,
                            registry=registry)
    return JSONResponse(doc)


@router.get("/health", operation_id="health", response_model=Health, responses={503: {"model": Health}})
def health(services: ServicesDep) -> JSONResponse:
    """Liveness and readiness: database reachable, prover workers running, queue depth, each background service
    running (its passes and failures)."""
    body = node_health(services)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ok" else 503)


def node_health(services: NodeServices) -> Health:
    """What /health answers (and the dashboard shows): ok when the database answers and a worker runs."""
    db_ok = services.db.ping()
    queue = services.queue.health()
    loops = [ServiceState(**vars(state)) for state in services.supervisor.health()]
    ok = db_ok and queue.ok and all(loop.running for loop in loops)
    return Health(status="ok" if ok else "degraded", version=__version__, database=db_ok,
                  workers=queue.workers, provers_warm=queue.warm_provers, queue_depth=queue.depth,
                  queue=queue.engine, jobs=services.calls.repo.counts() if db_ok else {}, services=loops,
                  payouts_held=_held(services), agent=getattr(services.agent, "agent", None))


def _held(services: NodeServices) -> str | None:
    tail = services.money.tail if services.money is not None else None
    if tail is None or not tail.held:
        return None
    return (f"{len(tail.held)} token transfers from the node account are not in its book (the first in "
            f"{tail.held[0].tx}): run `proofmarket ledger replay`")


@router.get("/metrics", operation_id="metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(services: ServicesDep, admin: IsAdminDep) -> Response:
    """Prometheus metrics: requests by route and status, proof durations, queue depth, workers, failures by code,
    escrow requests closed by outcome, escrow failures by code, fulfil time, open escrow requests, chain RPC requests
    by outcome, the node account's gas balance. What each model earned (``proofmarket_model_revenue_atomic_total``)
    only with the admin token (a scrape job's ``authorization``): an owner's revenue is not the public's."""
    text = generate_latest(services.registry).decode()
    if not admin:
        text = "".join(line for line in text.splitlines(keepends=True) if not _private_series(line))
    return Response(text, media_type=CONTENT_TYPE_LATEST)


PRIVATE_SERIES = ("proofmarket_model_revenue_atomic",)


def _private_series(line: str) -> bool:
    name = line.split(" ", 3)[2] if line.startswith("# ") and line.count(" ") >= 2 else line
    return name.startswith(PRIVATE_SERIES)


def _chain(services: NodeServices, paid: dict[str, object] | None) -> dict[str, object] | None:
    """The chain the node is paid on, with the market's contracts when one is deployed there."""
    chain = dict(paid) if paid else _settings_chain(services.settings)
    listings = services.catalog.listings
    if listings is not None:
        market = listings.market
        chain = {**(chain or {}), "chain_id": market.client.chain_id, "registry": market.registry.address,
                 "market": market.market.address, "usdc": market.usdc.address, "prover": listings.prover,
                 # what a consumer contract's callback must stay within, and tip, for this node to answer it
                 "callbacks": CallbackRule.of(services.settings).to_json()}
        if market.deployment.erc8004 is not None:
            chain["erc8004"] = market.deployment.erc8004
        if market.deployment.shared_verifier is not None:
            chain["shared_verifier"] = market.deployment.shared_verifier
    explorer = _settings_explorer(services.settings)
    if chain is not None and explorer:  # the web app links addresses and transactions to it
        chain["explorer"] = explorer
    return chain


def _settings_explorer(settings: Settings) -> str | None:
    """The block explorer of the chain the settings name (a known profile's), None for an unnamed RPC's chain."""
    profile = _named_profile(settings)
    return profile.explorer if profile is not None else None


def _settings_chain(settings: Settings) -> dict[str, object] | None:
    """The chain the settings name without asking an RPC: PROOFMARKET_CHAIN's profile, or the devnet's when no
    RPC URL is set; None for an RPC of unnamed chain (the market's client names it when one is deployed)."""
    profile = _named_profile(settings)
    return {"name": profile.name, "chain_id": profile.chain_id} if profile is not None else None


def _named_profile(settings: Settings) -> ChainProfile | None:
    """The profile of the chain the settings name (PROOFMARKET_CHAIN, or the devnet's when no RPC URL is set)."""
    if settings.chain.name is None and settings.chain.rpc_url is not None:
        return None
    return settings.profile()
