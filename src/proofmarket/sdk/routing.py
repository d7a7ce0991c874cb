"""Pick a node for a model among several, by price and what the client can check of its reputation.

Each candidate node is asked for the model (``GET /v1/models/{id}``: price, mode, prover). Its own word about
its record and scores is never trusted: without ``rpc_url`` every node is neutral on every count and the
cheapest wins. With ``rpc_url`` (your RPC) the record is read on chain, in YOUR deployment's contracts
(``deployment``, else ``PROOFMARKET_DEPLOYMENT_FILE`` or the deployment file kept for that chain in
``PROOFMARKET_HOME``), never in contracts the node names:

- identity: the agent the node's registration file names must be in your IdentityRegistry, owned by the
  prover the node names and registered by it (the newest agent it minted itself: one transferred in does not
  count), and its on-chain URI must point at this node's URL; a node naming no agent of yours is neutral,
- reputation: feedback counted only from clients who paid this prover for a fulfilled request on your
  InferenceMarket (``RequestFulfilled`` events), each client's average weighted by what it paid (0.5 without),
- validations: only responses of your deployment's ZkValidator and CourtValidator (0.5 without),
- x402: the USDC your token moved into the prover's revenue splitter for this model on your market
  (``splitterFor(modelIdOf(listing owner, model), prover)``: where x402 payments for its calls go, paid only once
  a call was proved), from payers other than the prover: paid calls, paying clients and what they paid,
- record: your market's counters plus the x402 paid calls, (fulfilled + x402 + 1) / (fulfilled + x402 + failed +
  expired + 2); a paying x402 client's feedback counts like an escrow client's, weighted by what it paid.

Score = quality / price, quality the mean of the three. Nodes that do not serve the model, are down, cost more
than ``max_price`` or whose word the chain contradicts are left out with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from proofmarket.core import jsonlimits
from proofmarket.core.errors import NodeUnavailable, ProofMarketError, UnknownModel, UsageError

if TYPE_CHECKING:
    from proofmarket.chain.client import ChainClient
    from proofmarket.chain.deploy import Deployment

NEUTRAL = 0.5
MAX_PAID_REQUESTS = 2000  # the newest fulfilled requests of a prover read for its paying clients


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
        "validations": min(1.0, max(0.0, float(val.get("average", 0)) / 100)) if val.get("count") else NEUTRAL,
        "record": _record(prover),
    }
    return sum(parts.values()) / len(parts), parts


def _record(prover: dict[str, Any]) -> float:
    good = int(prover.get("fulfilled", 0)) + int((prover.get("x402") or {}).get("calls", 0))
    return (good + 1) / (good + int(prover.get("failed", 0)) + int(prover.get("expired", 0)) + 2)


@dataclass
class _Chain:
    """Your chain and your deployment's contracts: where every record is read."""

    client: ChainClient
    deployment: Deployment

    @classmethod
    def open(cls, rpc_url: str, deployment: Deployment | None) -> _Chain:
        from proofmarket.chain.client import ChainClient

        client = ChainClient(rpc_url)
        deployment = deployment or _own_deployment(client.chain_id)
        if deployment.chain_id != client.chain_id or deployment.erc8004 is None:
            raise UsageError(f"your deployment is for chain {deployment.chain_id} without ERC-8004 registries; the "
                             f"RPC is chain {client.chain_id}: routing reads reputations in your own deployment's "
                             "contracts")
        return cls(client, deployment)


def _own_deployment(chain_id: int) -> Deployment:
    from proofmarket.chain.deploy import load_deployment
    from proofmarket.chain.home import MarketHome
    from proofmarket.core.settings import Settings

    settings = Settings()
    path = settings.chain.deployment_file or MarketHome(settings.home).deployment_file(chain_id)
    found = load_deployment(path)
    if found is None:
        raise UsageError(f"no deployment file for chain {chain_id} at {path}: routing by reputation reads your own "
                         "deployment's registries (set PROOFMARKET_DEPLOYMENT_FILE), never the ones a node names",
                         path=str(path))
    return found


def _on_chain(http: httpx.Client, url: str, chain: _Chain, claimed: dict[str, Any] | None,
              model_id: str = "", listing_owner: str | None = None) -> dict[str, Any] | None:
    """The prover record read in your contracts (None: no identity there that is this node's)."""
    from proofmarket.chain.erc8004 import Erc8004
    from proofmarket.chain.market import InferenceMarket

    registries = Erc8004.bind(chain.client, chain.deployment.erc8004 or {})
    mine = registries.identity.registry_id().lower()
    registration = jsonlimits.loads(http.get(f"{url}/.well-known/agent-registration.json").content,
                                    what="the node's registration file")
    regs = [r for r in registration.get("registrations") or [] if str(r.get("agentRegistry", "")).lower() == mine]
    if not regs or claimed is None:
        return None
    agent_id = int(regs[0]["agentId"])
    owner = registries.identity.owner_of(agent_id)
    if str(claimed.get("address", "")).lower() != owner.lower():
        raise ProofMarketError("the node's prover is not the owner of its agent identity")
    start = chain.deployment.contracts["IdentityRegistry"].block
    if registries.identity.agent_minted_by(owner, start) != agent_id:
        raise ProofMarketError(f"agent {agent_id} is not the newest agent its owner registered itself (an agent "
                               "transferred in says nothing about who holds it)")
    if not registries.identity.agent_uri(agent_id).startswith(f"{url}/"):
        raise ProofMarketError(f"agent {agent_id} names another URL than this node's")
    market = InferenceMarket(chain.client, chain.deployment.market)
    info = market.get_prover(owner)
    validators = [registries.zk.address] + ([chain.deployment.court_validator]
                                            if chain.deployment.court_validator else [])
    x402 = _x402_paid(chain, market, model_id, listing_owner, owner) if listing_owner else {}
    reputation = _paid_reputation(chain, market, registries, agent_id, owner, x402.pop("payers", {}))
    return {"address": owner, "stake": info.stake, "fulfilled": info.fulfilled, "failed": info.failed,
            "expired": info.expired, "x402": x402,
            "erc8004": {"agent_id": agent_id, "reputation": reputation,
                        "validations": registries.validation.summary(agent_id, validators).to_json()}}


def _x402_paid(chain: _Chain, market: Any, model_id: str, listing_owner: str, prover: str) -> dict[str, Any]:
    """The x402 payments into ``prover``'s splitter for the model (USDC ``Transfer`` events of your token):
    ``{calls, clients, paid, payers: {payer: amount}}``."""
    from proofmarket.chain.commitments import model_id_for
    from proofmarket.chain.contracts import UsdcToken

    if not (isinstance(listing_owner, str) and listing_owner.startswith("0x") and len(listing_owner) == 42):
        return {}
    splitter = market.splitter_for(model_id_for(listing_owner, model_id), prover)
    token = UsdcToken(chain.client, chain.deployment.usdc).contract
    start = chain.deployment.contracts["InferenceMarket"].block
    with chain.client.translate("read the x402 payments into the prover's splitter"):
        logs = token.events.Transfer().get_logs(from_block=start, to_block="latest", argument_filters={"to": splitter})
    payers: dict[str, int] = {}
    calls = 0
    for log in list(logs)[-MAX_PAID_REQUESTS:]:
        payer, value = str(log["args"]["from"]).lower(), int(log["args"]["value"])
        if payer != prover.lower() and value > 0:
            payers[payer] = payers.get(payer, 0) + value
            calls += 1
    return {"calls": calls, "clients": len(payers), "paid": sum(payers.values()), "payers": payers}


def _paid_reputation(chain: _Chain, market: Any, registries: Any, agent_id: int, prover: str,
                     x402_payers: dict[str, int] | None = None) -> dict[str, Any]:
    """Feedback of the clients who paid ``prover`` on your market (fulfilled requests, and x402 payments into its
    splitter), weighted by what they paid: ``{count, average, clients, paid}``; ``count`` 0 when no paying client
    rated it."""
    from eth_utils.address import to_checksum_address

    event = market.contract.events.RequestFulfilled()
    start = chain.deployment.contracts["InferenceMarket"].block
    with chain.client.translate("read the market's RequestFulfilled events"):
        logs = event.get_logs(from_block=start, to_block="latest", argument_filters={"prover": prover})
    paid: dict[str, int] = dict(x402_payers or {})
    for log in list(logs)[-MAX_PAID_REQUESTS:]:
        args = log["args"]
        consumer = market.get_request(int(args["requestId"])).consumer.lower()
        if consumer != prover.lower():
            paid[consumer] = paid.get(consumer, 0) + int(args["ownerAmount"]) + int(args["proverAmount"]) + int(
                args["platformFee"])
    weighted = weight = count = 0.0
    for client, amount in paid.items():
        summary = registries.reputation.summary(agent_id, [to_checksum_address(client)])
        if summary.count and amount:
            weighted, weight, count = weighted + summary.value * amount, weight + amount, count + summary.count
    return {"count": int(count), "average": weighted / weight if weight else 0.0, "clients": len(paid),
            "paid": int(weight)}


def pick_node(urls: list[str], model_id: str, *, rpc_url: str | None = None, deployment: Deployment | None = None,
              max_price: int | None = None, transport: httpx.BaseTransport | None = None,
              timeout: float = 10.0) -> Choice:
    """The best node for ``model_id`` among ``urls`` (``UnknownModel`` when none serves it within the price)."""
    ranked: list[Candidate] = []
    skipped: dict[str, str] = {}
    chain = _Chain.open(rpc_url, deployment) if rpc_url is not None else None
    with httpx.Client(timeout=timeout, transport=transport) as http:
        for url in (u.rstrip("/") for u in urls):
            try:
                response = http.get(f"{url}/v1/models/{model_id}")
                if response.status_code != 200:
                    skipped[url] = f"does not serve the model (HTTP {response.status_code})"
                    continue
                doc = jsonlimits.loads(response.content, what="the node's answer")  # nested JSON: skipped
                price = int(doc["price"]["atomic"])
                if not doc.get("active", True):
                    skipped[url] = "the model is deactivated there"
                    continue
                if max_price is not None and price > max_price:
                    skipped[url] = f"costs {price}, above {max_price}"
                    continue
                claimed = doc.get("prover")
                listing = doc.get("registry") if isinstance(doc.get("registry"), dict) else {}
                prover = _on_chain(http, url, chain, claimed, model_id, listing.get("owner")) \
                    if chain is not None else None  # never the node's word
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                skipped[url] = f"unreachable or malformed: {exc}"
                continue
            except ProofMarketError as exc:
                skipped[url] = exc.message
                continue
            quality, parts = _quality(prover)
            ranked.append(Candidate(url, price, str(doc.get("mode", "proven")), quality, quality / max(price, 1),
                                    {"parts": parts, "prover": prover, "claimed": claimed}))
    if not ranked:
        if skipped and all("unreachable" in why for why in skipped.values()):
            raise NodeUnavailable(f"none of the {len(urls)} node(s) answered", skipped=skipped)
        raise UnknownModel(f"none of the {len(urls)} node(s) sells model {model_id} on these terms", skipped=skipped)
    ranked.sort(key=lambda c: (-c.score, c.price_atomic, c.url))
    return Choice(ranked[0], ranked, skipped)
