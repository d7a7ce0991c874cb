"""GET /v1/nodes: the nodes registered on the ERC-8004 identity registry of the chain this node sells on (each
registration file checked to name its agent), with their models, prices and reputation: what ``proofmarket
discover`` lists, read with this node's RPC. Filters: task, mode, max_price.

The files and nodes named on chain are anyone's: they are fetched only at public addresses (unless the node allows
private webhook targets: the devnet), with a size limit and a timeout, at most ``MAX_AGENTS`` of them within
``BUDGET_S`` in all, and the list is kept ``TTL_S`` seconds, so a caller cannot make this node fetch on demand. One
discovery runs at a time; a request meanwhile gets the last list (``stale``) at once and holds no thread waiting:
agents that answer slowly on purpose cannot pile up the node's request threads."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from proofmarket.api.deps import ServicesDep
from proofmarket.core.errors import DiscoveryUnavailable, UsageError
from proofmarket.core.units import parse_usdc
from proofmarket.node.services import NodeServices

router = APIRouter(tags=["meta"])
TTL_S = 60.0
MAX_AGENTS = 50
BUDGET_S = 30.0
_LOCK = threading.Lock()


@router.get("/v1/nodes", operation_id="discover_nodes", responses={404: {"description": "discovery_unavailable"}})
async def discover_nodes(request: Request, services: ServicesDep,
                         task: Annotated[str | None, Query(max_length=32)] = None,
                         mode: Annotated[Literal["proven", "attested"] | None, Query()] = None,
                         max_price: Annotated[str | None, Query(max_length=40, description="USDC per call, "
                                                                                          "e.g. 0.01")] = None,
                         verified: Annotated[bool, Query(description="only agents whose file names them")] = True,
                         ) -> dict[str, Any]:
    """The nodes registered on chain (ERC-8004), with the models they sell, their prices and reputation."""
    from proofmarket.sdk.discovery import select

    cap = parse_usdc(max_price, what="max_price") if max_price is not None else None
    found, stale = await run_in_threadpool(_discovered, services, request.app.state)
    chosen = select(found, task=task, mode=mode, max_price_atomic=cap, only_verified=verified)
    return {"nodes": [n.to_json() for n in chosen], "total": len(chosen), "stale": stale}


def _discovered(services: NodeServices, state: Any) -> tuple[list[Any], bool]:
    """The nodes (fresh, or kept from less than ``TTL_S`` ago) and whether they are an older list served while another
    request's discovery runs."""
    from proofmarket.marketplace.webhook_targets import WebhookTargetRefused, pinned, private_allowed
    from proofmarket.sdk.discovery import discover

    listings = services.catalog.listings
    registries = listings.market.deployment.erc8004 if listings is not None else None
    if listings is None or registries is None:
        raise DiscoveryUnavailable("this node sells on no chain with ERC-8004 registries: it lists no other nodes")
    cached: tuple[float, list[Any]] | None = getattr(state, "discovered_nodes", None)
    if cached is not None and time.monotonic() - cached[0] < TTL_S:
        return cached[1], False
    with _LOCK:  # this app's discovery lock, made once
        running = getattr(state, "discovery_lock", None) or threading.Lock()
        state.discovery_lock = running
    if not running.acquire(blocking=False):  # a discovery runs: the last list now, no thread held waiting
        return (cached[1] if cached is not None else []), True
    try:
        allow = private_allowed(services.settings)

        def public_only(url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
            """Each fetch resolved once, checked, and sent to the address checked (no rebinding in between)."""
            try:
                return pinned(url, allow)
            except WebhookTargetRefused as exc:
                raise UsageError(f"this node does not fetch {url[:200]}: {exc.message.split(': ', 1)[0]}") from None

        found = discover(listings.market.client.rpc_url, registries["IdentityRegistry"],
                         reputation_registry=registries["ReputationRegistry"], limit=MAX_AGENTS, timeout_s=5.0,
                         route_url=public_only, budget_s=BUDGET_S)
        state.discovered_nodes = (time.monotonic(), found)
        return found, False
    finally:
        running.release()
