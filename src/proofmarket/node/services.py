"""What a running node holds: built once by ``node.compose.build_node``, read by the API's routers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from prometheus_client import CollectorRegistry

from proofmarket.calls import CallService
from proofmarket.calls.queue import CallQueue
from proofmarket.calls.settling import CallSettler
from proofmarket.chain.client import ChainClient
from proofmarket.core.background import Background, ServiceHealth
from proofmarket.core.errors import ChainError
from proofmarket.core.settings import Settings
from proofmarket.db import Database
from proofmarket.intake.court import CourtService
from proofmarket.intake.escrow import EscrowService
from proofmarket.intake.watcher import ChainWatcher
from proofmarket.marketplace.catalog import Catalog
from proofmarket.marketplace.webhooks import Dispatcher, Webhooks
from proofmarket.node.access import AccessTokens
from proofmarket.node.supervisor import Hosted, Supervisor
from proofmarket.onchain import Market
from proofmarket.payments.port import Rail, Rails, services_of
from proofmarket.payments.settler import Money
from proofmarket.systems.registry import ATTESTED_SYSTEM, SystemSet
from proofmarket.systems.workspace import Workspace

if TYPE_CHECKING:
    from proofmarket.systems.attested.system import AttestedSystem


@dataclass
class NodeServices:
    settings: Settings
    db: Database
    workspace: Workspace
    catalog: Catalog
    calls: CallService
    queue: CallQueue
    payments: Rail  # the default rail (x402 when payments are on, else free)
    registry: CollectorRegistry
    owns_workspace: bool
    tokens: AccessTokens
    rails: Rails
    systems: SystemSet
    webhooks: Webhooks | None = None
    money: Money | None = None  # the book, purchases, payouts and the settler (payments/settler.py)
    settler: CallSettler | None = None  # every paid call's settlement (calls/settling.py)
    agent: Background | None = None  # the node's ERC-8004 identity, kept (node/agent_service.py)
    _market: Market | None = field(default=None, init=False)
    _market_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _chain: ChainClient | None = field(default=None, init=False)
    _chain_down_until: float = field(default=0.0, init=False)
    supervisor: Supervisor = field(default_factory=Supervisor, init=False)

    def __post_init__(self) -> None:
        self.supervisor.register(self.registry)

    def market(self) -> Market | None:
        """The node's one market connection (one ``Market``, one ``ChainClient``), shared by the registry's
        listings and the escrow and court watchers; opened once, None when no market is deployed (or the watchers
        are off and the node sells on its own terms)."""
        if self.catalog.listings is not None:
            return self.catalog.listings.market
        with self._market_lock:
            if self._market is None and self.settings.chain.escrow_watcher != "off":
                self._market = Market.open_for(self.settings.chain.escrow_watcher, self.workspace, "escrow watchers")
            return self._market

    def chain_client(self) -> ChainClient | None:
        """The node's chain (its market's, its payments', else its RPC's), where contract wallets' signatures are
        checked; None when the node names none."""
        market = self.catalog.listings.market if self.catalog.listings is not None else self._market
        if market is not None:  # never opened here: a node without a market asks no RPC for one on every request
            return market.client
        client = getattr(getattr(self.payments, "gate", None), "chain", None)
        if isinstance(client, ChainClient):
            return client
        with self._market_lock:
            if self._chain is None and self.settings.chain.rpc_url:
                self._chain = ChainClient(self.settings.chain.rpc_url)
            return self._chain

    def answering_chain(self) -> ChainClient | None:
        """``chain_client()`` once it has answered (its chain id, asked once); a chain that did not answer is not
        asked again for a minute (a manifest or a signed request never waits on an RPC that is away)."""
        now = time.monotonic()
        if now < self._chain_down_until:
            return None
        client = self.chain_client()
        if client is None:
            return None
        try:
            client.chain_id  # noqa: B018 (cached by the client after the first answer)
        except ChainError:
            self._chain_down_until = now + 60.0
            return None
        return client

    def build_escrow(self) -> EscrowService | None:
        """The escrow watcher (None when off, or auto and no market is deployed); its answers are calls too."""
        if self.settings.chain.escrow_watcher == "off":
            return None
        return EscrowService.for_node(self.settings, self.db, self.workspace, self.registry, market=self.market(),
                                      calls=self.calls)

    def build_court(self) -> CourtService | None:
        """The court watcher (None when off, or no AttestationCourt is deployed); its answers are calls too."""
        if self.settings.chain.escrow_watcher == "off":
            return None
        court = CourtService.for_node(self.settings, self.db, self.workspace, self.registry, market=self.market(),
                                      calls=self.calls)
        if court is not None and self.webhooks is not None:
            court.status_hooks.append(self.webhooks.court_status)
        return court

    @property
    def attested(self) -> AttestedSystem:
        """The node's one attested runtime (``AttestedSystem``): attested models' loader, signer and chain."""
        return cast("AttestedSystem", self.systems.get(ATTESTED_SYSTEM))

    def start_background(self, *watchers: Background | None) -> None:
        """Start the node's background services, each after those it requires (``node/supervisor.py``,
        ``_services``): the registry follower (the paid path then reads listings from its cache, no RPC), the call
        settler, the engine (it hands the settler its proved calls), the rails' own loops (the channels' claims and
        sweeps), the money settler, the webhook sender, then ``watchers`` (the escrow and court watchers, which
        submit calls to the engine; their rails are registered first, so that the settler finds them). First, the
        temp folders a killed compile of an earlier version left (``evm_check.sweep_stale``)."""
        from proofmarket.systems.ezkl.evm_check import sweep_stale

        sweep_stale()
        for watcher in watchers:  # their answers are calls of their rails (escrow, court): the call settler's
            if isinstance(watcher, ChainWatcher) and watcher.calls is not None:
                self.rails.add(watcher.rail())
                watcher.follow_soon = self.settler.follow_now if self.settler is not None else None
        if not self.supervisor.order:  # once: an app whose lifespan runs again starts the same services again
            for name, service, requires in self._services(watchers):  # listed whole first: a failure adds none
                self.supervisor.add(service, requires, name=name)
        self.supervisor.start()

    def _services(self, watchers: tuple[Background | None, ...]
                  ) -> list[tuple[str | None, Background | None, tuple[str, ...]]]:
        """Every background service of the node (the name of one a requirement may name, None when this node does
        not run it) with the services it requires (by name)."""
        listings = self.catalog.listings
        calls = ("engine", "call-settler")  # a call submitted is run by the engine and settled by the settler
        return [
            ("listings", Hosted("listings", listings.start_following, listings.close,
                                lambda: listings.follower.health() if listings.follower is not None
                                else ServiceHealth("listings", False)) if listings is not None else None, ()),
            (None, self.agent, ()),  # the node's ERC-8004 identity: registered (or its URI updated) at start
            ("call-settler", self.settler, ("listings",)),
            ("engine", Hosted("engine", self.queue.start, self.queue.close, self._engine_health),  # hands the
             ("listings", "call-settler")),  # settler its proved calls
            *((None, loop, ()) for rail in self.rails.all() for loop in services_of(rail)),  # the channels' sweeper
            (None, self.money.settler if self.money is not None else None, ()),
            (None, self._dispatcher(), ()),
            *((None, watcher, calls) for watcher in watchers),  # they submit calls
        ]

    def _engine_health(self) -> ServiceHealth:
        """The engine's own loops (no Celery worker up is ``queue``'s news in /health, not a stopped service)."""
        return ServiceHealth("engine", self.queue.running())

    def _dispatcher(self) -> Dispatcher | None:
        """The webhook sender (a thread of this node): deliveries recorded by any process of the node."""
        if self.webhooks is None:
            return None
        from proofmarket.systems.attested.signer import node_signer

        return Dispatcher(self.webhooks, getattr(self.payments, "node", None) or node_signer(self.settings))

    def close(self) -> None:
        """Stop the background services (reverse order), then close what the node holds."""
        self.supervisor.close()
        self.queue.close()  # an engine built but never started (an app whose lifespan never ran)
        if self.settler is not None:
            self.settler.close()
        self.rails.close()
        if self.catalog.listings is not None:
            self.catalog.listings.close()
        self.systems.close()
        if self.owns_workspace:
            self.workspace.close()
        self.db.close()
