"""Nodes found from the chain: every agent of an ERC-8004 identity registry, its registration file (fetched from the
URI the chain holds and checked to name that same agent of that registry), the node it points to, the models that
node sells (mode, task, price; with what the file declares each answer guarantees: guarantee, proof format and
verifier contract) and the agent's reputation, filtered by task, mode (guarantee) and price.

    discover(rpc_url, identity_registry, reputation_registry=..., task="classification", max_price_atomic=10_000)

A file that does not name its agent, a node that does not answer, a URI that is not http(s): the node is listed with
``verified: false`` and the reason, never dropped silently (``only_verified`` drops them). Files are read with a size
limit and a timeout; what they and the nodes say about models and prices is the node's word (the registry's
listing is the chain's: ``Client.check_listing``)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from proofmarket.core.errors import ProofMarketError, UsageError

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
MAX_FILE_BYTES = 1 << 20
SERVICE_DOC = "/.well-known/ai-service.json"
PAGE, MAX_PAGES = 100, 10  # a node's models: 100 a page (the node's most), 1,000 at most


# where to fetch a URL: (the URL to connect to, headers, httpx extensions), or an error for a URL not to fetch
Route = Callable[[str], tuple[str, dict[str, str], dict[str, Any]]]

@dataclass
class Found:
    """One agent of the registry, as discovered."""

    agent_id: int
    owner: str
    uri: str
    registry: str
    verified: bool = False
    name: str | None = None
    node: str | None = None  # the node's base URL, from the file's "proofmarket" service
    x402: bool | None = None
    models: list[dict[str, Any]] = field(default_factory=list)
    reputation: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def discover(rpc_url: str, identity_registry: str, *, reputation_registry: str | None = None,
             task: str | None = None, mode: str | None = None, max_price_atomic: int | None = None,
             only_verified: bool = False, limit: int = 200, timeout_s: float = 10.0,
             route_url: Route | None = None, budget_s: float | None = None) -> list[Found]:
    """The nodes registered on ``identity_registry`` (on ``rpc_url``'s chain, yours), at most ``limit`` agents;
    with a filter, only the nodes selling a matching model, with those models. ``route_url`` gives where to fetch a
    URL, raising for one not to fetch (a node discovering for others refuses private addresses with it, and pins each
    fetch to the address it checked: a DNS answer that changes after the check reaches nothing private).
    ``budget_s``: the files of agents left when it is spent are not fetched (listed unverified, saying so), however
    slowly the others answered."""
    from proofmarket.chain.client import ChainClient
    from proofmarket.chain.erc8004 import IdentityRegistry, ReputationRegistry

    if limit < 1:
        raise UsageError("limit must be at least 1")
    client = ChainClient(rpc_url)
    identity = IdentityRegistry(client, identity_registry)
    reputation = ReputationRegistry(client, reputation_registry) if reputation_registry else None
    filtered = task is not None or mode is not None or max_price_atomic is not None
    found: list[Found] = []
    deadline = None if budget_s is None else time.monotonic() + budget_s
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as http:
        for agent_id in range(1, min(identity.total(), limit) + 1):
            entry = Found(agent_id, identity.owner_of(agent_id), identity.agent_uri(agent_id), identity.registry_id())
            if deadline is not None and time.monotonic() > deadline:
                entry.error = f"not read: the discovery's time budget ({budget_s:.0f} s) ran out first"
                found.append(entry)
                continue
            try:
                _read_node(http, entry, route_url)
            except (httpx.HTTPError, ValueError, KeyError, TypeError, ProofMarketError) as exc:
                entry.verified, entry.error = False, entry.error or f"{type(exc).__name__}: {exc}"[:300]
            if reputation is not None:
                entry.reputation = reputation.summary(agent_id).to_json()
            found.append(entry)
    return select(found, task=task, mode=mode, max_price_atomic=max_price_atomic, only_verified=only_verified) \
        if filtered or only_verified else found


def select(found: list[Found], *, task: str | None = None, mode: str | None = None,
           max_price_atomic: int | None = None, only_verified: bool = False) -> list[Found]:
    """The nodes selling a model of ``task``, ``mode`` and at most ``max_price_atomic``, with those models."""
    chosen = []
    for entry in found:
        if only_verified and not entry.verified:
            continue
        if task is not None or mode is not None or max_price_atomic is not None:
            models = [m for m in entry.models if _matches(m, task, mode, max_price_atomic)]
            if not models:
                continue
            entry = dataclasses.replace(entry, models=models)
        chosen.append(entry)
    return chosen


def _read_node(http: httpx.Client, entry: Found, route: Route | None) -> None:
    if not entry.uri.startswith(("https://", "http://")):
        entry.error = f"the registration file's URI is not http(s): {entry.uri[:200]}"
        return
    doc = _get_json(http, entry.uri, route)
    if not isinstance(doc, dict) or doc.get("type") != REGISTRATION_TYPE:
        entry.error = "the URI holds no ERC-8004 registration file"
        return
    entry.name = str(doc.get("name") or "")[:200] or None
    entry.x402 = bool(doc.get("x402Support"))
    names = {(int(r.get("agentId", -1)), str(r.get("agentRegistry", "")).lower())
             for r in doc.get("registrations") or [] if isinstance(r, dict)}
    if (entry.agent_id, entry.registry.lower()) not in names:
        entry.error = f"the registration file does not name agent {entry.agent_id} of {entry.registry}"
        return
    service = next((s for s in doc.get("services") or [] if isinstance(s, dict) and s.get("name") == "proofmarket"),
                   None)
    endpoint = str((service or {}).get("endpoint") or "")
    if not endpoint.endswith(SERVICE_DOC):
        entry.error = "the registration file names no proofmarket service"
        return
    entry.node = endpoint[: -len(SERVICE_DOC)]
    declared = {str(m.get("id")): m.get("verifiable") for m in doc.get("models") or []
                if isinstance(m, dict) and isinstance(m.get("verifiable"), dict)}
    cursor: str | None = None
    for _ in range(MAX_PAGES):  # the node's catalogue, a page at a time, each fetch routed (checked and pinned)
        listed = _get_json(http, f"{entry.node}/v1/models", route,
                           params={"limit": PAGE, **({"cursor": cursor} if cursor else {})})
        entry.models += [{"id": m["id"], "name": m.get("name"), "mode": m.get("mode"), "task": m.get("task"),
                          "price_atomic": int((m.get("price") or {}).get("atomic") or 0),
                          "price": (m.get("price") or {}).get("amount"), **_guarantee(declared.get(str(m["id"])))}
                         for m in listed.get("models") or []]
        cursor = listed.get("next_cursor")
        if not cursor:
            break
    entry.verified = True


def _guarantee(verifiable: dict[str, Any] | None) -> dict[str, Any]:
    """What the registration file declares a model's answers guarantee (``verifiable``), as a model's fields."""
    if verifiable is None:
        return {"guarantee": None, "proof_format": None, "verifier": None}
    verifier = verifiable.get("verifier")
    return {"guarantee": str(verifiable.get("guarantee") or "") or None,
            "proof_format": str(verifiable.get("proofFormat") or "") or None,
            "verifier": dict(verifier) if isinstance(verifier, dict) else None}


def _get_json(http: httpx.Client, url: str, route: Route | None, **kwargs: Any) -> Any:
    """``url``'s JSON (at most ``MAX_FILE_BYTES``), fetched where ``route`` says: the address it checked, with the
    name as the Host header and the TLS server name."""
    headers: dict[str, str] = {}
    extensions: dict[str, Any] = {}
    if route is not None:
        url, headers, extensions = route(url)
    with http.stream("GET", url, headers=headers, extensions=extensions, **kwargs) as answer:
        answer.raise_for_status()
        body = bytearray()
        for chunk in answer.iter_bytes():
            body += chunk
            if len(body) > MAX_FILE_BYTES:
                raise ValueError(f"{url} answered more than {MAX_FILE_BYTES} bytes")
    return json.loads(body)


def _matches(model: dict[str, Any], task: str | None, mode: str | None, max_price_atomic: int | None) -> bool:
    """``mode``: the guarantee the registration file declares and the mode the node lists both (a model declared
    proven that the node sells as attested matches neither)."""
    declared = model.get("guarantee")
    return ((task is None or model.get("task") == task)
            and (mode is None or (model.get("mode") == mode and declared in (None, mode)))
            and (max_price_atomic is None or int(model.get("price_atomic") or 0) <= max_price_atomic))
