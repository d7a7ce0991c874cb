"""A sliced model through the market's escrow on anvil (``onchain/sliced.py``): listed with its SlicedVerifier, a
request commits to the first slice's input, the prover proves every slice and fulfils once: the exact splits are
paid and the output the chain records is the last slice's. A listing whose verifier is not the SlicedVerifier of the
model's slices is refused before any escrow, and a fulfilment with another call's slice refunds the consumer in
full and slashes the prover."""

from __future__ import annotations

import json

import pytest
from market_helpers import OWNER_SHARE_BPS, PRICE, PRICE_UNITS, mlp_input

from proofmarket.chain import RequestStatus, instances_hash
from proofmarket.core.errors import RegistryMismatch
from proofmarket.onchain import Market
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture(scope="module")
def sliced_id(market_workspace: Workspace) -> str:
    samples = json.loads(sample_path("mlp", "samples").read_text())
    return str(market_workspace.compile_sliced(sample_path("mlp"), samples, 2, profile=PrivacyProfile(),
                                               candidates=[Candidate(256, 2, 7, 1)]).model_id)


def test_a_sliced_model_is_escrowed_and_fulfilled_in_one_transaction(market: Market, sliced_id: str) -> None:
    registered = market.register_model(sliced_id, PRICE, OWNER_SHARE_BPS)
    assert registered.action == "registered" and registered.spec.instance_count == 8 + 3  # input, then output
    receipt = market.request(sliced_id, mlp_input())
    result = market.fulfill(receipt.request_id)
    s = result.settlement
    fee = PRICE_UNITS * 250 // 10_000
    owner = PRICE_UNITS * OWNER_SHARE_BPS // 10_000
    assert s.valid and (s.owner_amount, s.prover_amount, s.platform_fee) == (owner, PRICE_UNITS - fee - owner, fee)
    bundle = market.workspace.store.get_json(result.bundle_cid)
    assert bundle["kind"] == "proofmarket/sliced-bundle" and len(bundle["slices"]) == 2
    assert bundle["input"]["commitment"] == receipt.commitment
    assert s.output_hash == bytes.fromhex(bundle["output"]["hash"][2:]) == instances_hash(s.outputs)
    assert market.market.get_request(receipt.request_id).status is RequestStatus.FULFILLED
    # anyone checks the paid bundle against the registry's listing on chain (its SlicedVerifier), in one eth_call
    from proofmarket.chain.onchain_verify import verify_on_chain

    found = verify_on_chain(market.client, market.registry, bundle)
    assert found.verifier == registered.spec.verifier and found.gas > 2 * 200_000
    from proofmarket.cli.verify_cmd import _on_chain  # 'verify --onchain': only a listing of the model's own verifier

    checked = _on_chain(market.workspace, bundle, market.client.rpc_url, market.registry.address, None)
    assert checked["verifier"] == registered.spec.verifier and checked["verifier_is_models_own"]

    # another call's last slice in this call's proof: the SlicedVerifier says no, the consumer is refunded
    again = market.request(sliced_id, mlp_input())
    other, _ = market.workspace.prove_sliced(sliced_id, {"input_data": [[0.1 * i for i in range(8)]]})
    mine, _ = market.workspace.prove_sliced(sliced_id, mlp_input())
    doc = mine.to_doc()
    doc["slices"][1] = other.to_doc()["slices"][1]
    from proofmarket.systems.ezkl.sliced import evm_proof

    doc["proof"] = evm_proof(doc["slices"]).model_dump()
    refused = market.submit_proof(again.request_id, doc)
    assert refused.status is RequestStatus.REJECTED and not refused.valid and refused.refunded == PRICE_UNITS


def test_a_listing_whose_verifier_is_not_the_slices_is_refused(market: Market, sliced_id: str, models: object) -> None:
    """A listing of the sliced model naming another verifier (here the plain MLP's own): the consumer's check of
    the entry refuses it before anything is escrowed."""
    from proofmarket.chain import model_key
    from proofmarket.onchain.sliced import sliced_spec

    other = market.deploy_verifier(models.public).address  # type: ignore[attr-defined]
    spec = sliced_spec(market.workspace.store, sliced_id, verifier=other, price=PRICE_UNITS,
                       owner_share_bps=OWNER_SHARE_BPS, metadata_cid=sliced_id)
    market.registry.register(model_key(sliced_id), spec, market.accounts.owner)
    with pytest.raises(RegistryMismatch) as refused:
        market.request(sliced_id, mlp_input())
    assert refused.value.details["field"] == "verifier_code"


@pytest.mark.parametrize("how", ["shared", "too large"])
def test_slices_on_the_shared_verifier_are_escrowed_and_fulfilled(market: Market, sliced_id: str, how: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice whose own verifier is over the EVM's code size limit (a 2^18-row slice's: bench/slices.md) goes on the
    chain's shared verifier, a SharedVerifier clone pinning the slice's VKA; so does every slice when the owner asks
    (--verifier shared). The entry checks, the fulfilment carries each clone's VKA, and the market pays."""
    from proofmarket.chain.shared import parse_clone
    from proofmarket.chain.sliced_verifier import SLICED_VERIFIER
    from proofmarket.systems.ezkl import solidity

    if how == "too large":  # every slice's verifier counts as over the limit: the owner's "own" cannot deploy them
        monkeypatch.setattr(solidity, "EIP170_MAX_CODE", 1_000)
    registered = market.register_model(sliced_id, PRICE, OWNER_SHARE_BPS,
                                        verifier="shared" if how == "shared" else "own")
    w3 = market.client.w3
    from proofmarket.chain.artifacts import load_artifact

    sliced = w3.eth.contract(address=registered.spec.verifier, abi=load_artifact(SLICED_VERIFIER).abi)
    verifiers = market.client.call(sliced.functions.slices())[0]
    assert all(parse_clone(market.client.code_at(v)) is not None for v in verifiers)  # each slice on a clone
    receipt = market.request(sliced_id, mlp_input())  # the consumer's check of the entry passes
    result = market.fulfill(receipt.request_id)
    assert result.settlement.valid and market.market.get_request(receipt.request_id).status is RequestStatus.FULFILLED

    # anyone checks the bundle on chain as 'verify --onchain' does: the listing's verifier is the model's own (each
    # clone pins its slice's VKA) and takes each slice's proof with that VKA in front (the bundle's own calldata,
    # for the slices' own verifiers, is refused by the clones)
    from proofmarket.chain.onchain_verify import verify_on_chain
    from proofmarket.cli.verify_cmd import _on_chain
    from proofmarket.core.errors import VerificationFailed

    bundle = market.workspace.store.get_json(result.bundle_cid)
    found = _on_chain(market.workspace, bundle, market.client.rpc_url, market.registry.address, None)
    assert found["valid"] and found["verifier"] == registered.spec.verifier and found["verifier_is_models_own"]
    with pytest.raises(VerificationFailed):
        verify_on_chain(market.client, market.registry, bundle)
    other, _ = market.workspace.prove_sliced(sliced_id, {"input_data": [[0.1 * i for i in range(8)]]})
    swapped = {**bundle, "slices": [bundle["slices"][0], other.to_doc()["slices"][1]]}  # another call's last slice
    with pytest.raises(VerificationFailed):
        _on_chain(market.workspace, swapped, market.client.rpc_url, market.registry.address, None)
    # the clones' form built by the prover and no VKA given (vkas empty): the SlicedVerifier would compare the links on
    # the wrapping, not on the proofs a clone checks; it sends a clone's form itself, and refuses a VKA missing
    from eth_abi.abi import encode

    from proofmarket.chain.sliced_verifier import evm_args
    from proofmarket.systems.ezkl.chain_form import vka_for
    from proofmarket.systems.ezkl.shared_verifier import shared_proof

    store = market.workspace.store
    for doc in (bundle, swapped):
        words = [vka_for(market.client.code_at, store, s["model"]["id"], v)
                 for s, v in zip(doc["slices"], verifiers, strict=True)]
        wrapped = [shared_proof(w, bytes.fromhex(s["proof"]["hex"].removeprefix("0x")))
                   for w, s in zip(words, doc["slices"], strict=True)]
        parts = [[int(i, 16) for i in s["proof"]["instances"]] for s in doc["slices"]]
        forged = encode(["bytes[]", "uint256[][]", "bytes32[][]"], [wrapped, parts, [[] for _ in wrapped]])
        assert sliced.functions.verifyProof(forged, evm_args(doc)[1]).call() is False
    honest, instances = evm_args(bundle, lambda k: vka_for(market.client.code_at, store,
                                                           bundle["slices"][k]["model"]["id"], verifiers[k]))
    assert sliced.functions.verifyProof(honest, instances).call() is True
