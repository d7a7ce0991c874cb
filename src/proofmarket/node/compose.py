"""The one composition root: everything a node (or a Celery worker) runs is built here, once.

``build_node(settings)`` makes one database (migrated under its lock), one workspace (artifact store), one set of
proof-system runtimes (``SystemSet``: one per system, one per engine worker where a system needs its own process),
the payment rails (the default: x402 when payments are on, else free; plus any extra rail), the runner and its
engine (local threads or Celery), the catalogue with the registry's listings, and the access tokens. Routers only
read what is built here; ``build_worker`` builds what a ``proofmarket worker`` process needs from the same parts.

Plug points: a proof system registers its ``SystemSpec`` (``systems.registry.register``) before the node is built;
a payment rail is handed to ``build_node(rails=[...])``; an engine is chosen by ``PROOFMARKET_QUEUE``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from prometheus_client import CollectorRegistry

from proofmarket.calls import CallMetrics, CallRunner, CallService, LocalCallQueue
from proofmarket.calls.cache import ProofCache
from proofmarket.calls.queue import CallQueue
from proofmarket.calls.settling import CallSettler
from proofmarket.chain.rpc_stats import RpcCollector
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.db import CallRepo, CallRow, Database, LeaseRepo, ModelRepo, ProofCacheRepo
from proofmarket.intake.rails import COURT_RAIL
from proofmarket.marketplace.catalog import Catalog
from proofmarket.marketplace.webhooks import Webhooks
from proofmarket.node.access import AccessTokens
from proofmarket.node.pinning import Pinning
from proofmarket.node.services import NodeServices
from proofmarket.payments.port import FreeAccess, Rail, Rails, routers_of
from proofmarket.payments.tickets import ProofOutcome, Settlement
from proofmarket.store import ArtifactStore
from proofmarket.systems.catalog import ModelCatalog
from proofmarket.systems.port import SystemContext
from proofmarket.systems.registry import SystemSet
from proofmarket.systems.workspace import Workspace

if TYPE_CHECKING:
    from fastapi import APIRouter

    from proofmarket.onchain.listings import Listings
    from proofmarket.payments.settler import Money

log = logging.getLogger("proofmarket.node")


def build_node(settings: Settings | None = None, workspace: Workspace | None = None,
               payments: Rail | None = None, *, rails: Sequence[Rail] = ()) -> NodeServices:
    """The node's services. ``payments``: the default rail (built from the settings when None); ``rails``: more
    rails the node accepts besides it (a request carrying a rail's credential is paid on that rail)."""
    settings = settings or Settings()
    tokens = AccessTokens.for_node(settings)
    db = Database(settings.db_url)
    db.prepare(settings.store.migrate)
    ws = workspace or Workspace(settings)
    registry = CollectorRegistry()
    registry.register(RpcCollector())  # the chain RPCs this process asked: requests, outcomes, time
    model_repo = ModelRepo(db)
    listings = _listings(settings, ws)
    built = _payments(settings, ws, model_repo, db, listings) if payments is None else (payments, [])
    default = built[0]
    rail_set = Rails(default, [*rails, *built[1]])
    db.ensure_tables(rail_set.tables())  # a rail's own tables that no migration holds
    systems = SystemSet(system_context(settings, ws.store, default, registry))
    ws.use_systems(systems)  # the CLI-facing workspace and the node share one attested runtime
    runner = build_runner(settings, db, ws.store, registry, rail_set)
    settler = _settler(settings, runner)
    queue = _queue(settings, runner, runner.calls, systems, settler)
    if listings is not None:
        runner.after_capture.append(listing_hook(listings))
    catalog = Catalog(model_repo, ModelCatalog(ws.store), _srs_check(default), listings)
    money = build_money(settings, db, rail_set, listings, registry)
    services = NodeServices(money=money, settings=settings, db=db, workspace=ws, catalog=catalog,
                            calls=CallService(runner.calls, queue, _cache(settings, db, ws.store, runner)),
                            queue=queue, payments=default, registry=registry, owns_workspace=workspace is None,
                            tokens=tokens, rails=rail_set, systems=systems, webhooks=Webhooks(settings, db),
                            settler=settler)
    if settings.chain.agent_register == "on":  # the node keeps its ERC-8004 identity (node/agent_service.py)
        from proofmarket.chain.client import node_profile
        from proofmarket.node.agent_service import AgentRegistration, registration_uri

        uri = registration_uri(settings, node_profile(settings).dev_keys_allowed)
        services.agent = AgentRegistration(services.market, uri)
    return services


def rail_routers(rails: Rails) -> list[APIRouter]:
    """The routes the node's rails bring (``rail.routers()``), and those of the built-in rails it does not run: they
    answer their rail's 404 (``credits_unavailable``, ``channels_unavailable``), so a client learns what is offered."""
    from proofmarket.payments.batch.rail import BatchSettlementRail
    from proofmarket.payments.credits.rail import CreditsRail

    return routers_of([BatchSettlementRail, CreditsRail, *rails.all()])


def system_context(settings: Settings, store: ArtifactStore, payments: Rail | None,
                   registry: CollectorRegistry | None = None, signer: LocalAccount | None = None,
                   **extra: Any) -> SystemContext:
    """What the proof systems are built with: the node's signer (the receipt key when payments are on: one node
    identity; else PROOFMARKET_NODE_KEY or the key kept in HOME) and the chain the node is on."""
    from proofmarket.systems.attested.signer import node_signer

    signer = signer or getattr(payments, "node", None) or node_signer(settings)
    return SystemContext(settings=settings, store=store, work_dir=settings.jobs_dir, signer=signer,
                         chain_id=node_chain_id(settings, payments), metrics=registry, extra=dict(extra))


def node_chain_id(settings: Settings, payments: Rail | None) -> int:
    """The chain the node is on: the payment rail's chain when payments are on, else the settings' chain."""
    described = (payments.describe().get("chain") or {}).get("chain_id") if payments is not None else None
    if described is not None:
        return int(described)
    from proofmarket.chain.client import node_chain_id as settings_chain  # web3: only when asked

    return settings_chain(settings)


def build_runner(settings: Settings, db: Database, store: ArtifactStore, registry: CollectorRegistry,
                 rails: Rails | Rail) -> CallRunner:
    """The call runner of a node or of a ``proofmarket worker`` process."""
    cache = ProofCacheRepo(db, settings.queue.proof_cache_size) if settings.queue.proof_cache_size else None
    runner = CallRunner(settings, CallRepo(db), ModelRepo(db), store, rails, CallMetrics(registry), cache)
    # a court's calls wait for their challenge window: not stuck
    runner.metrics.track_settling(lambda: runner.calls.settling_age(besides=(COURT_RAIL,)))
    runner.metrics.settler_lease.set(1.0)  # a node settles alone until a shared queue's lease says otherwise
    hooks = Webhooks(settings, db)  # callbacks and owners' events are rows: the node's dispatcher sends them
    runner.on_final.append(hooks.job_final)
    runner.after_capture.append(hooks.captured)
    pinning = Pinning.for_node(settings, store, registry)  # PROOFMARKET_PIN: model artifacts and bundles to IPFS
    if pinning is not None:
        runner.on_final.append(pinning.job_final)
    return runner


def _payments(settings: Settings, ws: Workspace, model_repo: ModelRepo, db: Database, listings: Listings | None
              ) -> tuple[Rail, list[Rail]]:
    """Payments off: free calls. On: x402 through the gate (``payments/exact/rail.py``), paid to the model's owner,
    x402 batch-settlement channels beside it (``node/batch_build.py``) when the chain has their contract, and x402 upto
    for metered calls (``node/upto_build.py``) when it has Permit2 and the upto proxy.
    Returns the default rail and the others."""
    if settings.payments.mode == "off":
        return FreeAccess(), []
    from proofmarket.core.settings import X402Settings  # web3 and the x402 SDK load only when payments are on
    from proofmarket.node.chain_setup import node_chain
    from proofmarket.payments.exact.rail import build_x402, check_public_url, check_window

    def owner_of(model_id: str) -> str | None:
        row = model_repo.get(model_id)
        return row.owner if row is not None else None

    extra = X402Settings()
    check_public_url(settings)
    check_window(extra)
    chain = node_chain(settings, extra)
    check_public_url(settings, dev_chain=chain.client.profile.dev_keys_allowed)
    exact = build_x402(chain, ws.store, owner_of, extra)
    from proofmarket.node.batch_build import build_batch

    batch = build_batch(chain, exact, db, ws.store, extra)
    from proofmarket.node.upto_build import build_upto

    upto = build_upto(chain, exact, ws.store, extra)
    from proofmarket.node.proven_build import build_proven

    proven = build_proven(chain, exact, ws.store, extra, listings.market if listings is not None else None)
    from proofmarket.payments.credits.rail import CreditsRail
    from proofmarket.payments.credits.repo import CreditsRepo

    credits = CreditsRail(CreditsRepo(db), chain.node, exact.gate.network, chain, pay_to=exact.pay_to_of,
                          free_min_balance=settings.owners.free_min_balance_atomic)
    return exact, [credits, *(rail for rail in (batch, upto, proven) if rail is not None)]


def _cached_balance(client: Any, address: str, every_s: float = 30.0) -> Callable[[], float]:
    """A scrape-time reader of ``address``'s native balance that asks the RPC at most every ``every_s``."""
    last: list[float] = [float("nan"), -every_s]

    def read() -> float:
        now = time.monotonic()
        if now - last[1] >= every_s:
            last[1] = now
            try:
                last[0] = float(client.w3.eth.get_balance(address))
            except Exception:  # the RPC is away: said by NaN (and by proofmarket_rpc_requests_total's outcomes)
                last[0] = float("nan")
        return last[0]

    return read


def build_money(settings: Settings, db: Database, rails: Rails, listings: Listings | None,
                registry: CollectorRegistry | None = None) -> Money:
    """The book, and with payments on: purchases by x402, payouts from the node's account, the settler."""
    from proofmarket.db.book import Book
    from proofmarket.payments.settler import Money

    book = Book(db)
    from proofmarket.payments.credits.rail import CreditsRail
    from proofmarket.payments.exact.rail import X402Payments

    exact, credits = rails.of(X402Payments), rails.of(CreditsRail)
    chain = credits.chain if credits is not None else None
    if exact is None or credits is None or chain is None:
        return Money(book)
    from proofmarket.payments.payouts import Payouts
    from proofmarket.payments.purchases import Purchases
    from proofmarket.payments.settler import Settler

    purchases = Purchases(credits.repo, exact)
    from proofmarket.payments.chain_tail import ChainTail

    deployment = getattr(getattr(listings, "market", None), "deployment", None)
    own = (deployment.market, deployment.court or "") if deployment is not None else ()  # stakes: the node's own
    tail = ChainTail(book, chain.client, chain.usdc, chain.node.address, own)
    release = _release_split(listings, ModelRepo(db)) if listings else None
    payouts = Payouts(book, chain.client, chain.usdc, chain.node, release,
                      min_atomic=settings.payments.payout_min_atomic, lease=LeaseRepo(db), gate=tail.gate)
    credits.gate = tail.gate  # no refund, as no payout, while the book is behind the chain
    from proofmarket.payments.batch.rail import BatchSettlementRail

    money = Money(book, purchases, payouts, tail=tail)
    for rail in rails.all():  # channel money swept to the node is paid out by the same path
        if isinstance(rail, BatchSettlementRail) and rail.sweeper is not None:
            rail.sweeper.payouts = payouts
            money.receivable_after_s = rail.sweeper.policy.interval_s  # a charge the sweep should have claimed
            money.refused = rail.storage.repo.refused_all
    differences = shortfall = None
    if registry is not None:
        from prometheus_client import Gauge

        differences = Gauge("proofmarket_ledger_differences", "differences between the book and the chain at the "
                            "last reconciliation (0: they agree)", registry=registry)
        gas = Gauge("proofmarket_node_gas_balance_wei", "The node account's native balance (what pays settlement, "
                    "payout and fulfilment gas), read at most every 30 s; NaN while the RPC does not answer",
                    registry=registry)
        gas.set_function(_cached_balance(chain.client, chain.node.address))
        if listings is not None:
            releases = Gauge("proofmarket_split_releases_failing", "listings whose revenue splitter the node could not "
                             "release on its last try (retried with a backoff; /v1/earnings shows why)",
                             registry=registry)
            releases.set_function(lambda: float(len(listings.release_failures)))
        shortfall = Gauge("proofmarket_ledger_shortfall_atomic", "what the node account lacks, in atomic token "
                          "units, to hold what the book owes others (credits, passes, payees, the platform) at the "
                          "last reconciliation (0: solvent)", registry=registry)
    money.settler = Settler(purchases, payouts, interval_s=settings.payments.settler_interval_s,
                            payout_every_s=settings.payments.payout_interval_s, lease=LeaseRepo(db), check=money.check,
                            check_every_s=settings.payments.ledger_check_interval_s, differences=differences,
                            shortfall=shortfall)
    return money


def _release_split(listings: Listings, models: ModelRepo) -> Callable[[str], None]:
    """After a payout (credits, passes, channel sweeps) paid a model's listing splitter: release the split (owner,
    prover and platform shares). The listing is the model's owner's, as the paid path sells it (``catalog.sellable``):
    the node's default owner only for a model without one; a listing deactivated since is released all the same."""

    def release(model_id: str) -> None:
        row = models.get(model_id)
        listing = listings.get(model_id, row.owner if row is not None else None)
        if listing.registered and listing.onchain_id:
            listings.release_later(str(listing.onchain_id))

    return release


def _listings(settings: Settings, ws: Workspace) -> Listings | None:
    """The registry's terms (price, active, owner, verifier, x402 splitter) when a market is deployed on the
    node's chain (``PROOFMARKET_REGISTRY_TERMS``: auto, on, off)."""
    if settings.chain.registry_terms == "off":
        return None
    from proofmarket.onchain import Market
    from proofmarket.onchain.listings import Listings

    try:
        market = Market.open(workspace=ws)
    except ProofMarketError as exc:
        if settings.chain.registry_terms == "on":
            raise
        log.info("selling on the node's own terms (no registry): %s", exc.message)
        return None
    return Listings(market, default_owner=settings.chain.model_owner, poll_s=settings.chain.escrow_poll_s,
                    validation_every_s=settings.chain.validation_every_s)


def listing_hook(listings: Listings) -> Callable[[CallRow, Settlement, ProofOutcome], None]:
    """After a call paid a listing's splitter: release the split, and record a ZK proof's ERC-8004 validation."""

    def after_capture(job: CallRow, settlement: Settlement, outcome: ProofOutcome) -> None:
        payment = settlement.payment or {}
        split = payment.get("split_onchain_id")
        if not split:
            return
        listings.release_later(str(split))
        proof = outcome.bundle.get("proof") or {}
        # only a ZK proof has instances to record, and the ZkValidator checks them with the model's own verifier: a
        # proof shared with other calls (batch) is its batch circuit's, which it would mark 0 (it is recorded once the
        # validator can name a batch verifier)
        if proof.get("instances") is not None and proof.get("hex") and not outcome.bundle.get("batch"):
            listings.validate_later(str(split), bytes.fromhex(str(proof["hex"]).removeprefix("0x")),
                                    [int(v, 16) for v in proof["instances"]], str(payment.get("paid_bundle_cid") or ""),
                                    str(payment.get("transaction") or ""))

    return after_capture


def _srs_check(payments: Rail) -> Callable[[str, Any], None]:
    """A node paid off the devnet refuses dev-SRS models (at load: ``catalog.register``, and when serving)."""
    from proofmarket.systems.ezkl.srs import check_servable

    chain_id = (payments.describe().get("chain") or {}).get("chain_id")

    def check(model_id: str, manifest: Any) -> None:
        srs = getattr(manifest, "srs", None)  # only circuits have an SRS
        if srs is not None and getattr(srs, "sha256", None):
            check_servable(srs.sha256, model_id, int(chain_id) if chain_id is not None else None)

    return check


def _cache(settings: Settings, db: Database, store: ArtifactStore, runner: CallRunner) -> ProofCache | None:
    """The node's side of the proof cache: calls looked up when submitted, hits and misses in /metrics."""
    if not settings.queue.proof_cache_size:
        return None
    return ProofCache(ProofCacheRepo(db, settings.queue.proof_cache_size), store, runner.calls, runner.metrics.cache)


def _settler(settings: Settings, runner: CallRunner) -> CallSettler:
    """The node's one settler of calls: handed the local engine's proved calls (as many settle threads as provers,
    at least 2: a slow settlement, a chain receipt, holds no other back), or finding the Celery workers' proved
    calls under the settler's lease (several nodes on one database settle one at a time)."""
    celery = settings.queue.kind == "celery"
    return CallSettler(runner, runner.calls, follow_s=settings.payments.settle_poll_s, scan=celery,
                       threads=max(2, settings.queue.prover_workers), leases=LeaseRepo(runner.calls.db) if celery
                       else None)


def _queue(settings: Settings, runner: CallRunner, job_repo: CallRepo, systems: SystemSet,
           settler: CallSettler) -> CallQueue:
    """The engine: local (worker threads in the node, each with its own prover process) or celery (workers over
    Redis; checked here: an unreachable Redis stops the node with ``queue_unavailable``)."""
    queue: CallQueue
    if settings.queue.kind == "celery":
        from proofmarket.calls.celery_queue import CeleryCallQueue

        queue = CeleryCallQueue(settings, job_repo, runner)
    else:
        queue = LocalCallQueue(runner, job_repo, [systems.worker(i) for i in range(settings.queue.prover_workers)],
                               settler)
    queue.recover()  # the port's restart rule, before anything starts
    return queue


class WorkerContext:
    """What one ``proofmarket worker`` process keeps between calls: database, store, runner, its systems.

    Payments stay on the nodes: a worker runs calls, the node settles them (its keys, its one nonce sequence)."""

    def __init__(self, settings: Settings, slice_share: Any = None) -> None:
        """``slice_share``: how this worker shares a sliced model's slices with the others (``calls/slice_share``)."""
        self.settings = settings
        self.db = Database(settings.db_url)
        self.db.prepare(settings.store.migrate)
        self.ws = Workspace(settings)
        self.runner = build_runner(settings, self.db, self.ws.store, CollectorRegistry(), FreeAccess())
        self.runner.settles = False
        from proofmarket.node.chain_setup import paid_node_account  # the node's identity signs what workers attest

        self.systems = SystemSet(system_context(settings, self.ws.store, None, signer=paid_node_account(settings),
                                                check_artifacts=True, slice_share=slice_share))
        self.ws.use_systems(self.systems)
        self.worker = self.systems.worker(0)
        self.stop = threading.Event()

    def close(self) -> None:
        self.stop.set()
        self.systems.close()
        self.ws.close()
        self.db.close()
