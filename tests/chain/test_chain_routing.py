"""Routing reads only records a client can check (P3-08), on anvil: a node charging twice the price with records
it wrote itself (sybil feedback, a validator it named, registries it deployed and named in its discovery file, an agent
transferred to it)
is not ranked first; the cheaper honest node, rated by a client who paid it on the market, is.

The nodes' HTTP answers are stubs (a node's files are whatever it chooses to serve); every record is on chain."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from chain_helpers import Chain, Listed, list_model, stake_prover

from proofmarket.chain import dev_account, input_commitment
from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.erc8004 import Erc8004, IdentityRegistry, ReputationRegistry, ValidationRegistry
from proofmarket.sdk.routing import pick_node

pytestmark = pytest.mark.chain

MODEL = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
VALID, INVALID = b"\x01" + b"\x00" * 31, b"\x02" + b"\x00" * 31
INSTANCES = [11, 22, 33, 101, 202]


def _serve(chain: Chain, agent: int, registry: str, prover: str, price: int,
           erc8004: dict[str, str] | None = None) -> dict[str, Any]:
    """What a node serves: its model (price, its own claims), registration file and service document."""
    boast = {"address": prover, "fulfilled": 999, "failed": 0, "expired": 0,
             "erc8004": {"agent_id": agent, "reputation": {"count": 50, "average": 100},
                         "validations": {"count": 50, "average": 100}}}
    return {"/v1/models/" + MODEL: {"price": {"atomic": str(price)}, "mode": "proven", "active": True, "prover": boast},
            "/.well-known/agent-registration.json": {"registrations": [{"agentId": agent, "agentRegistry": registry}]},
            "/.well-known/ai-service.json": {"chain": {"chain_id": chain.client.chain_id,
                                                       "erc8004": erc8004 or chain.deployment.erc8004,
                                                       "market": chain.market.address}}}


def _transport(nodes: dict[str, dict[str, Any]]) -> httpx.MockTransport:
    def send(request: httpx.Request) -> httpx.Response:
        doc = nodes.get(request.url.host, {}).get(request.url.path)
        return httpx.Response(200, content=json.dumps(doc).encode()) if doc else httpx.Response(404, json={})

    return httpx.MockTransport(send)


def _served_request(chain: Chain, model: Listed, proof: bytes) -> None:
    """The consumer escrows the model's price; the honest prover claims and fulfils it (or fails it)."""
    request_id = chain.market.request_inference(model.key, input_commitment(INSTANCES[:3]),
                                                chain.client.timestamp() + 3600, chain.accounts.consumer).request_id
    chain.market.accept_request(request_id, chain.accounts.prover)
    chain.market.fulfill(request_id, proof, INSTANCES, chain.accounts.prover)


def test_routing_ignores_self_written_records(chain: Chain) -> None:
    a, ours = chain.accounts, Erc8004.bind(chain.client, chain.deployment.erc8004 or {})
    sybils = [a.relayer] + [dev_account(i, chain.client.chain_id) for i in (7, 8, 9)]
    griefers = [a.admin, a.owner, a.stranger, sybils[1]]
    model = list_model(chain)
    for prover in (a.prover, a.prover2):
        stake_prover(chain, prover)
    chain.usdc.approve(chain.market.address, 100 * 10**6, a.consumer)
    # the honest node: one request paid and fulfilled, one proof it got wrong; its paying client rates it 90,
    # four griefers who never paid rate it 0
    honest, _ = ours.identity.register("http://honest/.well-known/agent-registration.json", a.prover)
    _served_request(chain, model, VALID)
    _served_request(chain, model, INVALID)
    ours.reputation.give_feedback(honest, 90, a.consumer)
    for griefer in griefers:
        ours.reputation.give_feedback(honest, 0, griefer)
    # the sybil node, in our registries: feedback 100 from accounts that never paid it, a validator it named
    sybil, _ = ours.identity.register("http://sybil/.well-known/agent-registration.json", a.prover2)
    for account in sybils[:3]:
        ours.reputation.give_feedback(sybil, 100, account)
    digest = b"\x5a" * 32
    ours.validation.request(sybils[3].address, sybil, "self", digest, a.prover2)
    ours.validation.respond(digest, 100, sybils[3])
    # the node with registries of its own, named in its discovery file, full of perfect scores
    client = chain.client
    ident, _ = client.deploy(load_artifact("IdentityRegistry"), sybils[0])
    rep, _ = client.deploy(load_artifact("ReputationRegistry"), sybils[0], ident)
    val, _ = client.deploy(load_artifact("ValidationRegistry"), sybils[0], ident)
    own_agent, _ = IdentityRegistry(client, ident).register("http://own/.well-known/agent-registration.json",
                                                            sybils[0])
    ReputationRegistry(client, rep).give_feedback(own_agent, 100, sybils[1])
    ValidationRegistry(client, val).request(sybils[2].address, own_agent, "self", digest, sybils[0])
    ValidationRegistry(client, val).respond(digest, 100, sybils[2])
    own = {"IdentityRegistry": ident, "ReputationRegistry": rep, "ValidationRegistry": val,
           "ZkValidator": ours.zk.address}
    # an agent rated well by its paying client, minted by the honest prover and then transferred to another
    bought, _ = ours.identity.register("http://bought/.well-known/agent-registration.json", a.prover)
    chain.client.transact(ours.identity.contract.functions.transferFrom(a.prover.address, sybils[3].address,
                                                                        bought), a.prover)
    ours.reputation.give_feedback(bought, 100, a.consumer)
    registry = ours.identity.registry_id()
    nodes = {"honest": _serve(chain, honest, registry, a.prover.address, 1000),
             "sybil": _serve(chain, sybil, registry, a.prover2.address, 2000),
             "own": _serve(chain, own_agent, f"eip155:{client.chain_id}:{ident}", sybils[0].address, 2000, own),
             "bought": _serve(chain, bought, registry, sybils[3].address, 2000)}
    urls = ["http://sybil", "http://own", "http://bought", "http://honest"]
    choice = pick_node(urls, MODEL, rpc_url=chain.client.rpc_url, deployment=chain.deployment,
                       transport=_transport(nodes))
    assert choice.best.url == "http://honest", [(c.url, c.quality, c.details["parts"]) for c in choice.ranked]
    assert list(choice.skipped) == ["http://bought"] and "transferred" in choice.skipped["http://bought"]
    by_url = {c.url: c for c in choice.ranked}
    assert by_url["http://honest"].details["parts"]["reputation"] == pytest.approx(0.9)  # its paying client only
    assert by_url["http://sybil"].details["parts"] == {"reputation": 0.5, "validations": 0.5, "record": 0.5}
    assert by_url["http://own"].details["prover"] is None  # its registries are not ours: nothing to read
    # without an RPC nothing is checked: the nodes' boasts count for nothing, the cheapest goes first
    blind = pick_node(urls, MODEL, transport=_transport(nodes))
    assert blind.best.url == "http://honest" and {c.quality for c in blind.ranked} == {0.5}


def test_paid_x402_history_ranks_a_node_above_one_with_none(chain: Chain) -> None:
    """x402 calls leave a record a client can check: the USDC its payers moved into the prover's splitter for the
    model on your market. At the same price, the node with paid x402 history is ranked first; its paying x402
    client's feedback counts, weighted by what it paid."""
    a, ours = chain.accounts, Erc8004.bind(chain.client, chain.deployment.erc8004 or {})
    list_model(chain, MODEL, a.owner)
    for prover in (a.prover, a.prover2):
        stake_prover(chain, prover)
    paid, _ = ours.identity.register("http://paid/.well-known/agent-registration.json", a.prover)
    unpaid, _ = ours.identity.register("http://unpaid/.well-known/agent-registration.json", a.prover2)
    from proofmarket.chain.commitments import model_id_for

    splitter = chain.market.splitter_for(model_id_for(a.owner.address, MODEL), a.prover.address)
    for _ in range(3):  # three x402 calls settled into the prover's splitter (EIP-3009 transfers of the price)
        chain.usdc.transfer(splitter, 1000, a.consumer)
    ours.reputation.give_feedback(paid, 80, a.consumer)  # a paying x402 client rates it
    ours.reputation.give_feedback(unpaid, 100, a.stranger)  # feedback from someone who never paid counts nothing
    registry = ours.identity.registry_id()
    listing = {"owner": a.owner.address}
    nodes = {"paid": _serve(chain, paid, registry, a.prover.address, 1000),
             "unpaid": _serve(chain, unpaid, registry, a.prover2.address, 1000)}
    for node in nodes.values():
        node["/v1/models/" + MODEL]["registry"] = listing
    choice = pick_node(["http://unpaid", "http://paid"], MODEL, rpc_url=chain.client.rpc_url,
                       deployment=chain.deployment, transport=_transport(nodes))
    by_url = {c.url: c for c in choice.ranked}
    assert choice.best.url == "http://paid", [(c.url, c.details["parts"]) for c in choice.ranked]
    assert by_url["http://paid"].quality > by_url["http://unpaid"].quality  # not a tie broken by the URL
    x402 = by_url["http://paid"].details["prover"]["x402"]
    assert (x402["calls"], x402["clients"], x402["paid"]) == (3, 1, 3000)
    assert by_url["http://paid"].details["parts"]["reputation"] == pytest.approx(0.8)
    assert by_url["http://unpaid"].details["parts"] == {"reputation": 0.5, "validations": 0.5, "record": 0.5}
