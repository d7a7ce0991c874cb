"""InferenceMarket.fulfillBatch: several claimed requests of one model settled by one batch proof (MockVerifier)."""

from __future__ import annotations

import pytest
from chain_helpers import PRICE, Chain, Listed, deploy_mock_verifier, list_model, set_verifier_mode, stake_prover
from test_chain_market import INVALID, VALID, open_request

from proofmarket.chain import RequestStatus, advance_time, instances_hash
from proofmarket.core.errors import ContractReverted

pytestmark = pytest.mark.chain

SIZE = 4
INPUTS = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]  # a slot's three input instances (chain_helpers' layout)
OUTPUTS = [[101, 102], [201, 202], [301, 302], [401, 402]]  # and its two output instances


def batch_instances(inputs: list[list[int]] = INPUTS, outputs: list[list[int]] = OUTPUTS) -> list[int]:
    """A batch proof's instances: every slot's inputs, then every slot's outputs (no params commitment)."""
    return [v for slot in inputs for v in slot] + [v for slot in outputs for v in slot]


@pytest.fixture
def batched(chain: Chain, model: Listed) -> str:
    """The model's batch verifier of 4 calls, registered (a block before any request of the test)."""
    verifier = deploy_mock_verifier(chain)
    chain.registry.register_batch(model.key, SIZE, verifier, chain.accounts.owner)
    advance_time(chain.client, 1)
    return verifier


def claimed(chain: Chain, model: Listed, inputs: list[list[int]]) -> list[int]:
    ids = [open_request(chain, model, felts) for felts in inputs]
    for request_id in ids:
        chain.market.accept_request(request_id, chain.accounts.prover)
    return ids


def test_a_batch_proof_settles_each_request_with_its_own_slot(chain: Chain, model: Listed, batched: str) -> None:
    # Given three requests whose inputs sit in slots 2, 0 and 3 of one proof (slot 1 is someone else's call)
    ids = claimed(chain, model, [INPUTS[2], INPUTS[0], INPUTS[3]])
    prover = chain.accounts.prover.address
    owed = chain.market.owed(prover)
    settled = chain.market.fulfill_batch({ids[0]: 2, ids[1]: 0, ids[2]: 3}, SIZE, VALID, batch_instances(),
                                         chain.accounts.prover)
    # Then each is fulfilled with its own slot's output, and paid as fulfill pays
    for request_id, slot in zip(ids, (2, 0, 3), strict=True):
        assert settled[request_id].valid and settled[request_id].outputs == OUTPUTS[slot]
        onchain = chain.market.get_request(request_id)
        assert onchain.status is RequestStatus.FULFILLED and onchain.output_hash == instances_hash(OUTPUTS[slot])
    fee, owner_amount = PRICE * 250 // 10_000, PRICE * 7_000 // 10_000
    assert chain.market.owed(prover) == owed + 3 * (PRICE - fee - owner_amount)
    assert chain.market.get_prover(prover).fulfilled >= 3


def test_an_invalid_batch_proof_refunds_and_slashes_every_request(chain: Chain, model: Listed, batched: str) -> None:
    consumer = chain.accounts.consumer.address
    ids = claimed(chain, model, INPUTS[:2])
    before = chain.usdc.balance_of(consumer)
    settled = chain.market.fulfill_batch({ids[0]: 0, ids[1]: 1}, SIZE, INVALID, batch_instances(),
                                         chain.accounts.prover)
    assert [settled[i].status for i in ids] == [RequestStatus.REJECTED] * 2
    assert chain.usdc.balance_of(consumer) == before + 2 * PRICE


@pytest.mark.parametrize("case, match", [
    ("swapped slots", "another input"),
    ("one slot twice", "outside the batch or given to two"),
    ("slot out of range", "outside the batch or given to two"),
    ("instances of the single circuit", "public instances"),
    ("no verifier of that size", "no batch verifier of 8 calls"),
    ("more requests than slots", "does not fit a batch circuit"),
])
def test_a_batch_that_binds_wrongly_is_refused_and_nobody_is_slashed(chain: Chain, model: Listed, batched: str,
                                                                     case: str, match: str) -> None:
    ids = claimed(chain, model, INPUTS[:2])
    slots, size, instances = {ids[0]: 0, ids[1]: 1}, SIZE, batch_instances()
    if case == "swapped slots":
        slots = {ids[0]: 1, ids[1]: 0}
    elif case == "one slot twice":
        slots = {ids[0]: 0, ids[1]: 0}
    elif case == "slot out of range":
        slots = {ids[0]: 0, ids[1]: SIZE}
    elif case == "instances of the single circuit":
        instances = INPUTS[0] + OUTPUTS[0]
    elif case == "no verifier of that size":
        size = 8
    elif case == "more requests than slots":
        size = 1
    failed = chain.market.get_prover(chain.accounts.prover.address).failed
    with pytest.raises(ContractReverted, match=match):
        chain.market.fulfill_batch(slots, size, VALID, instances, chain.accounts.prover)
    assert all(chain.market.get_request(i).status is RequestStatus.ACCEPTED for i in ids)
    assert chain.market.get_prover(chain.accounts.prover.address).failed == failed


def test_one_request_cannot_take_two_slots_and_be_refunded_twice(chain: Chain, model: Listed, batched: str) -> None:
    # Given one claimed request whose input sits in every slot, and a proof the verifier refuses
    (request_id,) = claimed(chain, model, INPUTS[:1])
    consumer = chain.accounts.consumer.address
    before = chain.usdc.balance_of(consumer)
    instances = batch_instances([INPUTS[0]] * SIZE)
    ids = [request_id] * SIZE
    call = chain.market.contract.functions.fulfillBatch(ids, list(range(SIZE)), SIZE, INVALID, instances)
    # When the prover names it in four slots (the Python wrapper cannot: its slots are a dict, sent in id order):
    # refused (each request once), nobody refunded four times
    with pytest.raises(ContractReverted, match="give each request once"):
        chain.client.transact(call, chain.accounts.prover)
    assert chain.usdc.balance_of(consumer) == before
    assert chain.market.get_request(request_id).status is RequestStatus.ACCEPTED


def test_a_verifier_that_says_a_verifier_it_called_ran_out_of_gas_reverts_instead_of_slashing(
        chain: Chain, model: Listed, batched: str) -> None:
    ids = claimed(chain, model, INPUTS[:2])
    set_verifier_mode(chain, batched, 4)
    failed = chain.market.get_prover(chain.accounts.prover.address).failed
    with pytest.raises(ContractReverted, match="ran out of gas"):
        chain.market.fulfill_batch({ids[0]: 0, ids[1]: 1}, SIZE, VALID, batch_instances(), chain.accounts.prover)
    assert chain.market.get_prover(chain.accounts.prover.address).failed == failed


def test_only_the_claimer_of_every_request_may_batch_them(chain: Chain, model: Listed, batched: str) -> None:
    ids = claimed(chain, model, INPUTS[:1])
    other = open_request(chain, model, INPUTS[1])
    stake_prover(chain, chain.accounts.prover2)
    chain.market.accept_request(other, chain.accounts.prover2)
    with pytest.raises(ContractReverted, match="not claimed by the sender"):
        chain.market.fulfill_batch({ids[0]: 0, other: 1}, SIZE, VALID, batch_instances(), chain.accounts.prover)
    with pytest.raises(ContractReverted, match="not claimed by the sender"):  # nor an unclaimed one
        chain.market.fulfill_batch({open_request(chain, model, INPUTS[2]): 2}, SIZE, VALID, batch_instances(),
                                   chain.accounts.prover)


def test_requests_of_two_models_cannot_share_a_batch(chain: Chain, model: Listed, batched: str) -> None:
    second = list_model(chain, "bafy-second-model")
    chain.registry.register_batch(second.key, SIZE, deploy_mock_verifier(chain), chain.accounts.owner)
    advance_time(chain.client, 1)
    ids = claimed(chain, model, INPUTS[:1]) + claimed(chain, second, INPUTS[1:2])
    with pytest.raises(ContractReverted, match="for another model"):
        chain.market.fulfill_batch({ids[0]: 0, ids[1]: 1}, SIZE, VALID, batch_instances(), chain.accounts.prover)


def test_a_batch_verifier_registered_after_a_request_never_settles_it(chain: Chain, model: Listed) -> None:
    # Given a request made before the owner named any batch verifier
    ids = claimed(chain, model, INPUTS[:1])
    advance_time(chain.client, 1)
    accepting = deploy_mock_verifier(chain)  # e.g. one that accepts whatever the owner's prover sends
    chain.registry.register_batch(model.key, SIZE, accepting, chain.accounts.owner)
    with pytest.raises(ContractReverted, match="before the batch verifier was registered"):
        chain.market.fulfill_batch({ids[0]: 0}, SIZE, VALID, batch_instances(), chain.accounts.prover)
    # the request is still answered by the model's own verifier, as when it was made
    assert chain.market.fulfill(ids[0], VALID, INPUTS[0] + OUTPUTS[0], chain.accounts.prover).valid


def test_a_batch_verifier_is_set_once_by_the_owner(chain: Chain, model: Listed) -> None:
    verifier = deploy_mock_verifier(chain)
    with pytest.raises(ContractReverted, match="does not own model"):
        chain.registry.register_batch(model.key, SIZE, verifier, chain.accounts.stranger)
    with pytest.raises(ContractReverted, match="outside 2 .. 64"):
        chain.registry.register_batch(model.key, 1, verifier, chain.accounts.owner)
    with pytest.raises(ContractReverted, match="no contract at the verifier"):
        chain.registry.register_batch(model.key, SIZE, chain.accounts.stranger.address, chain.accounts.owner)
    chain.registry.register_batch(model.key, SIZE, verifier, chain.accounts.owner)
    with pytest.raises(ContractReverted, match="already has a batch verifier"):
        chain.registry.register_batch(model.key, SIZE, deploy_mock_verifier(chain), chain.accounts.owner)
    entry = chain.registry.batch_verifier(model.key, SIZE)
    assert entry.address == verifier and entry.codehash == chain.client.w3.keccak(
        chain.client.w3.eth.get_code(verifier))
    assert chain.registry.batch_verifier(model.key, 16).address is None
    chain.registry.register_batch(model.key, 64, deploy_mock_verifier(chain), chain.accounts.owner)
    assert [b.size for b in chain.registry.batch_verifiers(model.key)] == [SIZE, 64]  # one read finds every size


def test_a_verifier_out_of_gas_reverts_the_batch_instead_of_slashing(chain: Chain, model: Listed,
                                                                      batched: str) -> None:
    ids = claimed(chain, model, INPUTS[:2])
    set_verifier_mode(chain, batched, 3)
    with pytest.raises(ContractReverted):
        chain.market.fulfill_batch({ids[0]: 0, ids[1]: 1}, SIZE, VALID, batch_instances(), chain.accounts.prover,
                                   gas=400_000)
    assert all(chain.market.get_request(i).status is RequestStatus.ACCEPTED for i in ids)
