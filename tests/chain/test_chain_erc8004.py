"""The ERC-8004 registries (identity, reputation, validation) on anvil: the interface's rules hold."""

from __future__ import annotations

from typing import Any

import pytest
from chain_helpers import Chain
from web3.logs import DISCARD

from proofmarket.chain.artifacts import load_artifact
from proofmarket.core.errors import ContractReverted

pytestmark = pytest.mark.chain


def _deploy(chain: Chain) -> tuple[Any, Any, Any]:
    client, admin = chain.client, chain.accounts.admin
    ident, _ = client.deploy(load_artifact("IdentityRegistry"), admin)
    rep, _ = client.deploy(load_artifact("ReputationRegistry"), admin, ident)
    val, _ = client.deploy(load_artifact("ValidationRegistry"), admin, ident)
    w3 = client.w3
    return tuple(w3.eth.contract(address=a, abi=load_artifact(n).abi)  # type: ignore[return-value]
                 for a, n in ((ident, "IdentityRegistry"), (rep, "ReputationRegistry"), (val, "ValidationRegistry")))


def test_identity_reputation_and_validation(chain: Chain) -> None:
    identity, reputation, validation = _deploy(chain)
    client, a = chain.client, chain.accounts
    node, consumer, validator = a.prover, a.consumer, a.owner
    register = identity.get_function_by_signature("register(string)")
    tx = client.transact(register("http://node/.well-known/agent-registration.json"), node)
    agent = int(identity.events.Registered().process_receipt(tx.receipt, errors=DISCARD)[0]["args"]["agentId"])
    assert agent == 1 and client.call(identity.functions.totalAgents()) == 1
    assert client.call(identity.functions.ownerOf(agent)) == node.address
    assert client.call(identity.functions.tokenURI(agent)).endswith("agent-registration.json")
    client.transact(identity.functions.setMetadata(agent, "proofmarket.prover", b"\x01"), node)
    assert client.call(identity.functions.getMetadata(agent, "proofmarket.prover")) == b"\x01"
    with pytest.raises(ContractReverted):
        client.transact(identity.functions.setMetadata(agent, "x", b"\x02"), consumer)

    give = reputation.functions.giveFeedback
    client.transact(give(agent, 90, 0, "inference", "proven", "http://node", "", b"\x00" * 32), consumer)
    client.transact(give(agent, 70, 0, "inference", "attested", "http://node", "", b"\x00" * 32), consumer)
    with pytest.raises(ContractReverted, match="SelfFeedback"):
        client.transact(give(agent, 100, 0, "inference", "", "", "", b"\x00" * 32), node)
    with pytest.raises(ContractReverted, match="UnknownAgent"):
        client.transact(give(agent + 9, 1, 0, "", "", "", "", b"\x00" * 32), consumer)
    count, value, decimals = client.call(reputation.functions.getSummary(agent, [], "inference", ""))
    assert [count, value, decimals] == [2, 80 * 10**18, 18]
    client.transact(reputation.functions.revokeFeedback(agent, 2), consumer)
    assert list(client.call(reputation.functions.getSummary(agent, [consumer.address], "", "")))[:2] == [1, 90 * 10**18]
    assert client.call(reputation.functions.getClients(agent)) == [consumer.address]

    request_hash = b"\x42" * 32
    with pytest.raises(ContractReverted, match="NotAgentOwnerOrOperator"):
        client.transact(validation.functions.validationRequest(validator.address, agent, "ipfs://b", request_hash),
                        consumer)
    client.transact(validation.functions.validationRequest(validator.address, agent, "ipfs://b", request_hash), node)
    with pytest.raises(ContractReverted, match="RequestExists"):
        client.transact(validation.functions.validationRequest(validator.address, agent, "x", request_hash), node)
    with pytest.raises(ContractReverted, match="NotTheValidator"):
        client.transact(validation.functions.validationResponse(request_hash, 100, "", b"\x00" * 32, "t"), node)
    with pytest.raises(ContractReverted, match="ResponseOutOfRange"):
        client.transact(validation.functions.validationResponse(request_hash, 101, "", b"\x00" * 32, "t"), validator)
    client.transact(validation.functions.validationResponse(request_hash, 100, "ipfs://r", b"\x01" * 32, "zk"),
                    validator)
    status = client.call(validation.functions.getValidationStatus(request_hash))
    assert status[0] == validator.address and status[1] == agent and status[2] == 100 and status[4] == "zk"
    assert list(client.call(validation.functions.getSummary(agent, [], "zk"))) == [1, 100]
    assert client.call(validation.functions.getAgentValidations(agent)) == [request_hash]


def test_an_extreme_feedback_clamps_the_summary_instead_of_wrapping_it(chain: Chain) -> None:
    """int128's largest value at 0 decimals is 1.7e56 at the summary's 18: the average is clamped to int128, where it
    used to wrap (one feedback made the agent's summary about -1e18; docs/security/erc8004.md)."""
    identity, reputation, _ = _deploy(chain)
    client, a = chain.client, chain.accounts
    tx = client.transact(identity.get_function_by_signature("register(string)")("http://node"), a.prover)
    agent = int(identity.events.Registered().process_receipt(tx.receipt, errors=DISCARD)[0]["args"]["agentId"])
    top, bottom = 2**127 - 1, -(2**127)
    give = reputation.functions.giveFeedback
    client.transact(give(agent, top, 0, "", "", "", "", b"\x00" * 32), a.consumer)
    assert list(client.call(reputation.functions.getSummary(agent, [], "", ""))) == [1, top, 18]
    client.transact(give(agent, bottom, 0, "", "", "", "", b"\x00" * 32), a.stranger)
    client.transact(give(agent, bottom, 0, "", "", "", "", b"\x00" * 32), a.owner)
    assert list(client.call(reputation.functions.getSummary(agent, [a.stranger.address], "", ""))) == [1, bottom, 18]
    assert list(client.call(reputation.functions.getSummary(agent, [], "nothing-tagged", ""))) == [0, 0, 18]


def test_agent_minted_by_ignores_agents_transferred_in(chain: Chain) -> None:
    """Anyone can register an agent and transfer it to a node's address: only the agent the node minted itself
    (and still holds) is the node's identity."""
    from proofmarket.chain.erc8004 import IdentityRegistry

    identity, _, _ = _deploy(chain)
    registry = IdentityRegistry(chain.client, identity.address)
    node, attacker = chain.accounts.prover, chain.accounts.consumer
    assert registry.agent_minted_by(node.address) is None
    own, _ = registry.register("http://node/.well-known/agent-registration.json", node)
    planted, _ = registry.register("http://attacker/.well-known/agent-registration.json", attacker)
    transfer = identity.functions.transferFrom(attacker.address, node.address, planted)
    chain.client.transact(transfer, attacker)
    assert registry.owner_of(planted) == node.address
    assert registry.agent_of(node.address) == planted  # the newest agent held: the attacker's
    assert registry.agent_minted_by(node.address) == own
    assert registry.agent_minted_by(attacker.address) is None  # minted, but no longer held
    chain.client.transact(identity.functions.transferFrom(node.address, attacker.address, own), node)
    assert registry.agent_minted_by(node.address) is None
