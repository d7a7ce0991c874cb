"""Pick a node for a model among several, by price and reputation.

Each candidate node is asked for the model (``GET /v1/models/{id}``: price, mode, prover record and ERC-8004
scores). With ``rpc_url`` the record is read again on chain (your RPC): the agent named by the node's
registration file, its reputation and validation summaries, and the market's counters of the agent's owner;
a node whose word and the chain disagree is dropped. Score = quality / price, quality the mean of:

- reputation: average feedback / 100 (0.5 without feedback),
- validations: average response / 100 (0.5 without validations),
- record: (fulfilled + 1) / (fulfilled + failed + expired + 2) (Laplace: 0.5 for a new prover).

Nodes that do not serve the model, are down, or cost more than ``max_price`` are left out with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from proofmarket.errors import NodeUnavailable, ProofMarketError, UnknownModel

NEUTRAL = 0.5


@dataclass(frozen=True)
class Candidate:
    url: str
    price_atomic: int
    mode: str
    quality: float
    score: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    best: Candidate
    ranked: list[Candidate]
    skipped: dict[str, str]  # url -> why


def _quality(prover: dict[str, Any] | None) -> tuple[float, dict[str, float]]:
    prover = prover or {}
    erc = prover.get("erc8004") or {}
    rep, val = erc.get("reputation") or {}, erc.get("validations") or {}
    parts = {
        "reputation": min(1.0, max(0.0, float(rep.get("average", 0)) / 100)) if rep.get("count") else NEUTRAL,
        "validations": float(val.get("average", 0)) / 100 if val.get("count") else NEUTRAL,
        "record": (int(prover.get("fulfilled", 0)) + 1) / (int(prover.get("fulfilled", 0)) + int(
            prover.get("failed", 0)) + int(prover.get("expired", 0)) + 2),
    }
    return sum(parts.values()) / len(parts), parts


def _on_chain(http: httpx.Client, url: str, rpc_url: str, claimed: dict[str, Any] | None) -> dict[str, Any] | None:
    """The prover record read from the chain (None: no identity); raises when the node's word differs."""
    from proofmarket.chain.client import ChainClient
    from proofmarket.chain.erc8004 import Erc8004
    from proofmarket.chain.market import InferenceMarket

    registration = http.get(f"{url}/.well-known/agent-registration.json").json()
    regs = registration.get("registrations") or []
    if not regs:
        return None
    chain_doc = http.get(f"{url}/.well-known/ai-service.json").json().get("chain") or {}
    client = ChainClient(rpc_url)
    _, chain_id, identity = str(regs[0]["agentRegistry"]).split(":")
    addresses = chain_doc.get("erc8004") or {}
    if int(chain_id) != client.chain_id or str(addresses.get("IdentityRegistry", "")).lower() != identity.lower():
        raise ProofMarketError("the node's registries are not on this chain")
    registries = Erc8004.bind(client, addresses)
    agent_id = int(regs[0]["agentId"])
    owner = registries.identity.owner_of(agent_id)
    if claimed is not None and str(claimed.get("address", "")).lower() != owner.lower():
        raise ProofMarketError("the node's prover is not the owner of its agent identity")
    info = InferenceMarket(client, str(chain_doc["market"])).get_prover(owner)
    return {"address": owner, "stake": info.stake, "fulfilled": info.fulfilled, "failed": info.failed,
            "expired": info.expired,
            "erc8004": {"agent_id": agent_id, "reputation": registries.reputation.summary(agent_id).to_json(),
                        "validations": registries.validation.summary(agent_id).to_json()}}


def pick_node(urls: list[str], model_id: str, *, rpc_url: str | None = None, max_price: int | None = None,
              transport: httpx.BaseTransport | None = None, timeout: float = 10.0) -> Choice:
    """The best node for ``model_id`` among ``urls`` (``UnknownModel`` when none serves it within the price)."""
    ranked: list[Candidate] = []
    skipped: dict[str, str] = {}
    with httpx.Client(timeout=timeout, transport=transport) as http:
        for url in (u.rstrip("/") for u in urls):
            try:
                response = http.get(f"{url}/v1/models/{model_id}")
                if response.status_code != 200:
                    skipped[url] = f"does not serve the model (HTTP {response.status_code})"
                    continue
                doc = response.json()
                price = int(doc["price"]["atomic"])
                if not doc.get("active", True):
                    skipped[url] = "the model is deactivated there"
                    continue
                if max_price is not None and price > max_price:
                    skipped[url] = f"costs {price}, above {max_price}"
                    continue
                prover = doc.get("prover")
                if rpc_url is not None:
                    prover = _on_chain(http, url, rpc_url, prover)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                skipped[url] = f"unreachable or malformed: {exc}"
                continue
            except ProofMarketError as exc:
                skipped[url] = exc.message
                continue
            quality, parts = _quality(prover)
            ranked.append(Candidate(url, price, str(doc.get("mode", "proven")), quality, quality / max(price, 1),
                                    {"parts": parts, "prover": prover}))
    if not ranked:
        if skipped and all("unreachable" in why for why in skipped.values()):
            raise NodeUnavailable(f"none of the {len(urls)} node(s) answered", skipped=skipped)
        raise UnknownModel(f"none of the {len(urls)} node(s) sells model {model_id} on these terms", skipped=skipped)
    ranked.sort(key=lambda c: (-c.score, c.price_atomic, c.url))
    return Choice(ranked[0], ranked, skipped)
