"""Batched settlement with real proofs on anvil: the model's batch verifier is listed with it, several escrow requests
are proven in one batch proof and settled by one fulfillBatch, each with its own slot's output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from market_helpers import (
    MLP_CANDIDATE,
    OWNER_SHARE_BPS,
    PRICE,
    compile_mlp,
    consumer_contract,
    request_with_callback,
)

from proofmarket.chain import RequestStatus, advance_time, instances_hash
from proofmarket.core.errors import RegistryMismatch, UsageError
from proofmarket.onchain import Market
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.verify import own_instances
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain]

SIZE = 4


def sample_inputs() -> list[dict[str, Any]]:
    samples = json.loads(sample_path("mlp", "samples").read_text())["inputs"]
    return [{"inputs": samples[i % len(samples)]} for i in range(SIZE)]


@pytest.fixture(scope="module")
def batch_model(market_workspace: Workspace) -> str:
    """The sample MLP with a batch circuit of 4 calls and its Solidity verifier."""
    result = compile_mlp(market_workspace, "public", MLP_CANDIDATE, batch_sizes=(SIZE,))
    circuit = result.manifest.batch(SIZE)
    assert circuit is not None and circuit.verifier is not None and circuit.verifier.deployed_size <= 24_576
    return result.model_id


def test_a_listing_names_its_batch_verifier_and_requests_settle_in_one_proof(market: Market, batch_model: str) -> None:
    # Given the model listed: its own verifier and its batch verifier of 4 calls
    registration = market.register_model(batch_model, PRICE, OWNER_SHARE_BPS)
    assert set(registration.batch_verifiers) == {SIZE}
    key = market.onchain_id(batch_model)
    assert market.registry.batch_verifier(key, SIZE).address == registration.batch_verifiers[SIZE]
    assert market.register_model(batch_model, PRICE, OWNER_SHARE_BPS).batch_verifiers == {}  # once
    advance_time(market.client, 1)

    # When three requests are proven together and settled by one transaction
    receipts = [market.request(batch_model, doc) for doc in sample_inputs()[:3]]
    ids = [r.request_id for r in receipts]
    assert market.settles_batched(batch_model, market.market.get_request(ids[0]))
    results = market.fulfill_batch(ids)

    # Then each request is fulfilled with its own slot's output, the one proof shared, one transaction
    bundles = [market.workspace.store.get_json(results[i].bundle_cid) for i in ids]
    assert len({b["proof"]["hex"] for b in bundles}) == 1 and len({results[i].settlement.tx.tx_hash for i in ids}) == 1
    for slot, request_id in enumerate(ids):
        result = results[request_id]
        assert result.settlement.valid and bundles[slot]["batch"] == {"size": SIZE, "slot": slot}
        onchain = market.market.get_request(request_id)
        assert onchain.status is RequestStatus.FULFILLED
        report = market.workspace.prover.verify(bundles[slot])  # each bundle verifies off chain, for its slot
        assert report.valid
        alone = market.workspace.prover.prove(batch_model, sample_inputs()[slot]).bundle
        assert result.output[0] == pytest.approx(alone.output.values[0], abs=0.05)
    # and the chain recorded each slot's output hash (another request's slot would not match)
    assert len({market.market.get_request(i).output_hash for i in ids}) == 3


def test_one_call_proven_with_others_is_settled_in_its_slot(market: Market, batch_model: str) -> None:
    market.register_model(batch_model, PRICE, OWNER_SHARE_BPS)
    advance_time(market.client, 1)
    docs = sample_inputs()
    receipt = market.request(batch_model, docs[2])
    # the node's queue proved it in slot 2 beside three HTTP calls (not escrow requests)
    proved = market.workspace.prover.prove_together(batch_model, docs, SIZE)
    settlement = market.submit_proof(receipt.request_id, proved[2].bundle)
    assert settlement.valid
    instances = [int(v, 16) for v in proved[2].bundle.proof.instances]
    assert market.market.get_request(receipt.request_id).output_hash == instances_hash(
        own_instances(proved[2].bundle, instances).outputs)


def test_requests_made_before_the_batch_verifier_are_not_batched(market: Market, batch_model: str) -> None:
    # Given a model listed without its batch verifier (as before this release), and two requests
    verifiers = market.register_batches
    market.register_batches = lambda model_id: {}  # type: ignore[method-assign]
    try:
        market.register_model(batch_model, PRICE, OWNER_SHARE_BPS)
    finally:
        market.register_batches = verifiers  # type: ignore[method-assign]
    ids = [market.request(batch_model, doc).request_id for doc in sample_inputs()[:2]]
    assert not market.settles_batched(batch_model, market.market.get_request(ids[0]))
    # When the owner then registers it, the open requests still are not settled by it (a verifier added while a
    # request is open could be anything the owner likes)
    assert set(market.register_batches(batch_model)) == {SIZE}
    with pytest.raises(UsageError, match="registered before these requests were made"):
        market.fulfill_batch(ids)
    assert not market.settles_batched(batch_model, market.market.get_request(ids[0]))
    # they are fulfilled one by one, as when they were made
    assert all(market.fulfill(i).settlement.valid for i in ids)


def test_a_batch_needs_one_model_and_distinct_requests(market: Market, batch_model: str) -> None:
    with pytest.raises(UsageError, match="each request id once"):
        market.fulfill_batch([1, 1])



def test_a_batch_verifier_that_is_not_the_manifests_makes_the_listing_refused(market: Market, batch_model: str) -> None:
    """fulfillBatch takes any batch verifier the owner registered: one that is not compiled from the manifest's batch
    circuit of its size (say, one that accepts anything) must make every consumer and prover refuse the listing."""
    market.register_model(batch_model, PRICE, OWNER_SHARE_BPS)
    key = market.onchain_id(batch_model)
    market.check_entry(batch_model, key)  # its own batch verifier: fine
    other = market.registry.get_model(key).spec.verifier  # a real contract, not the batch circuit's verifier
    market.registry.register_batch(key, 2, other, market.accounts.owner)  # a size the manifest does not have
    with pytest.raises(RegistryMismatch) as err:
        market.check_entry(batch_model, key)
    assert err.value.details["field"] == "batch_verifier" and err.value.details["size"] == 2
    with pytest.raises(RegistryMismatch):  # the consumer's request is refused before any money moves
        market.request(batch_model, sample_inputs()[0])


def test_consumer_contracts_in_one_batch_proof_each_get_their_own_slot_in_their_callback(
        market: Market, batch_model: str) -> None:
    """Two consumer contracts' requests settled by one fulfillBatch: each callback gets its own slot's outputs; the
    one that reverts is recorded as owed, and both requests are paid."""
    market.register_model(batch_model, PRICE, OWNER_SHARE_BPS)
    advance_time(market.client, 1)
    docs = sample_inputs()
    consumers = [consumer_contract(market, "TestConsumer", mode, funds=10 * 10**6) for mode in (0, 1)]  # 1 reverts
    ids = [request_with_callback(market, consumer, batch_model, doc, gas=150_000, tip=0)
           for consumer, doc in zip(consumers, docs[:2], strict=True)]
    proved = market.workspace.prover.prove_together(batch_model, docs, SIZE)
    for request_id in ids:
        market.claim(market.market.get_request(request_id), check=False)
    settled = market.submit_batch({ids[0]: 0, ids[1]: 1}, proved[0].bundle)
    assert [settled[i].valid for i in ids] == [True, True]
    assert [settled[i].callback_ok for i in ids] == [True, False]
    assert consumers[0].functions.lastOutputs().call() == settled[ids[0]].outputs != settled[ids[1]].outputs
    assert market.market.callback_of(ids[1]).owed and not market.market.callback_of(ids[0]).owed
