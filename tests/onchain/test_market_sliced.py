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


def _capped(monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    """This chain carries at most ``cap`` gas per transaction (as EIP-7825's 2**24 caps Ethereum's)."""
    import dataclasses

    from proofmarket.chain import client as client_module

    real = client_module.profile_for
    monkeypatch.setattr(client_module, "profile_for", lambda chain_id: dataclasses.replace(real(chain_id),
                                                                                          max_tx_gas=cap))


def _recorded_events(market: Market, verifier: str) -> list[int]:
    """The slices (1-based) the SlicedVerifier's SliceRecorded events name, in order."""
    from proofmarket.chain.artifacts import load_artifact
    from proofmarket.chain.sliced_verifier import SLICED_VERIFIER

    contract = market.client.w3.eth.contract(address=verifier, abi=load_artifact(SLICED_VERIFIER).abi)
    return [int(e["args"]["slice"]) + 1 for e in contract.events.SliceRecorded().get_logs(from_block=0)]


def test_a_sliced_call_over_one_transactions_gas_is_settled_in_a_bounded_sequence(
        market: Market, sliced_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain whose per-transaction gas is under the call's whole verification but over any one slice's: the
    prover records each slice in a transaction of its own (both do not fit one), then fulfils with their keys; the
    market pays the exact splits once. A node that stopped after recording a slice does not record it again."""
    from proofmarket.chain import sliced_verifier

    registered = market.register_model(sliced_id, PRICE, OWNER_SHARE_BPS)
    verifier = registered.spec.verifier
    receipt = market.request(sliced_id, mlp_input())
    bundle, _ = market.workspace.prove_sliced(sliced_id, mlp_input())
    whole, gas = sliced_verifier.check(market.client, verifier, bundle.to_doc())
    assert whole and gas > 400_000
    _capped(monkeypatch, int(gas * 0.9))  # the whole proof does not fit; one slice (about half) does, two do not
    assert market.client.profile.max_tx_gas == int(gas * 0.9)
    settled = market.submit_proof(receipt.request_id, bundle.to_doc())
    fee = PRICE_UNITS * 250 // 10_000
    owner = PRICE_UNITS * OWNER_SHARE_BPS // 10_000
    assert settled.valid and (settled.owner_amount, settled.prover_amount, settled.platform_fee) == (
        owner, PRICE_UNITS - fee - owner, fee)
    assert market.market.get_request(receipt.request_id).status is RequestStatus.FULFILLED
    assert _recorded_events(market, verifier) == [1, 2]  # one slice per transaction
    assert settled.tx.gas_used < gas  # the fulfilment itself checked two keys, not two proofs

    # a second call on another input, its first slice recorded by a node that stopped there: only the second is sent
    again = market.request(sliced_id, {"input_data": [[0.1 * i for i in range(8)]]})
    other, _ = market.workspace.prove_sliced(sliced_id, {"input_data": [[0.1 * i for i in range(8)]]})
    proofs, parts = sliced_verifier.slice_proofs(other.to_doc())
    sliced_verifier.record(market.client, verifier, market.accounts.prover, ([0], [proofs[0]], [parts[0]], [[]]))
    assert market.submit_proof(again.request_id, other.to_doc()).valid
    assert _recorded_events(market, verifier) == [1, 2, 1, 2]

    # anyone checks such a call on chain ('verify --onchain', the SDK): the one eth_call is over what a transaction
    # carries, so the chain checks it in the settlement's steps (each slice's record, then the call of the records)
    from eth_utils.crypto import keccak

    from proofmarket.cli.verify_cmd import _on_chain
    from proofmarket.core.errors import VerificationFailed

    checked = _on_chain(market.workspace, bundle.to_doc(), market.client.rpc_url, market.registry.address, None)
    assert checked["valid"] and checked["verifier"] == verifier and checked["gas"] > 0
    swapped = {**bundle.to_doc(), "slices": [bundle.to_doc()["slices"][0], other.to_doc()["slices"][1]]}
    with pytest.raises(VerificationFailed):  # a broken link: refused in the one call, before any verifier runs
        _on_chain(market.workspace, swapped, market.client.rpc_url, market.registry.address, None)
    forged = bundle.to_doc()  # the first slice's proof changed past its commitments: the links hold, it does not
    hexed = forged["slices"][0]["proof"]["hex"]
    forged["slices"][0]["proof"]["hex"] = hexed[:-2] + ("00" if hexed[-2:] != "00" else "01")
    assert sliced_verifier.check_in_steps(market.client, verifier, forged) == (False, 0)  # its record reverts
    assert sliced_verifier.check_in_steps(market.client, verifier, swapped) == (False, 0)  # no link on the records
    assert sliced_verifier.check_in_steps(market.client, verifier, bundle.to_doc())[0]
    # the override sets the records where the contract keeps them: a recorded key's slot reads 1
    key = sliced_verifier.record_key(0, sliced_verifier.link_digests(proofs[0], 0, *sliced_verifier.layout(
        market.client, verifier)[1:3]), parts[0])  # type: ignore[arg-type]
    slot = keccak(key + sliced_verifier.RECORDED_SLOT.to_bytes(32, "big"))
    assert int(market.client.rpc("eth_getStorageAt", [verifier, "0x" + slot.hex(), "latest"]), 16) == 1


def test_recorded_slices_bind_as_the_whole_proof_does(market: Market, sliced_id: str) -> None:
    """The SlicedVerifier's record: a slice its verifier refuses is not recorded; a key names exactly one slice's
    link digests and instances, so a call named by records is refused where a link, an instance or a record is not
    the call's (another call's recorded slice, slices never recorded, the first slice's digests as the second's)."""
    from eth_abi.abi import encode

    from proofmarket.chain.artifacts import load_artifact
    from proofmarket.chain.sliced_verifier import (
        SLICED_VERIFIER,
        evm_args,
        layout,
        link_digests,
        record,
        record_key,
        slice_proofs,
    )
    from proofmarket.core.errors import ContractReverted

    verifier = market.register_model(sliced_id, PRICE, OWNER_SHARE_BPS).spec.verifier
    client, prover = market.client, market.accounts.prover
    _, inputs, outputs, _ = layout(client, verifier)
    mine = market.workspace.prove_sliced(sliced_id, mlp_input())[0].to_doc()
    other = market.workspace.prove_sliced(sliced_id, {"input_data": [[0.1 * i for i in range(8)]]})[0].to_doc()
    contract = client.w3.eth.contract(address=verifier, abi=load_artifact(SLICED_VERIFIER).abi)

    def verdict(proof: bytes, instances: list[int]) -> bool:
        return bool(contract.functions.verifyProof(proof, instances).call())

    proofs, parts = slice_proofs(mine)
    digests = {k: link_digests(p, k, inputs, outputs) for k, p in enumerate(proofs)}
    named = evm_args(mine, recorded=digests)  # every slice named by its record: none recorded yet
    assert not verdict(*named)
    forged = bytearray(proofs[1])
    forged[-1] ^= 1  # a proof its verifier refuses: SliceInvalid, nothing kept
    with pytest.raises(ContractReverted, match="SliceInvalid"):
        record(client, verifier, prover, ([1], [bytes(forged)], [parts[1]], [[]]))
    with pytest.raises(ContractReverted, match="BadSlice"):  # a VKA where the slice takes none
        record(client, verifier, prover, ([1], [proofs[1]], [parts[1]], [[bytes(32)]]))
    record(client, verifier, prover, ([0, 1], proofs, parts, [[], []]))
    assert contract.functions.recorded(record_key(1, digests[1], parts[1])).call()
    assert verdict(*named)  # both recorded: the call named by its keys
    mixed = evm_args(mine, recorded={0: digests[0]})  # one recorded, one sent whole
    assert verdict(*mixed)
    # another call's last slice, recorded too: its input digest is not this call's first slice's output
    o_proofs, o_parts = slice_proofs(other)
    record(client, verifier, prover, ([1], [o_proofs[1]], [o_parts[1]], [[]]))
    o_digests = link_digests(o_proofs[1], 1, inputs, outputs)
    swapped = {**mine, "slices": [mine["slices"][0], other["slices"][1]]}
    assert not verdict(*evm_args(swapped, recorded={0: digests[0], 1: o_digests}))
    # this call's records with the other call's output as the last slice's instances: they are in its key
    first = inputs[0]
    assert not verdict(encode(["bytes[]", "uint256[][]", "bytes32[][]"],
                              [[b"", b""], [parts[0], o_parts[1]], [list(digests[0]), list(digests[1])]]),
                       named[1][:first] + evm_args(other)[1][first:])
    # the first slice's digests given for the second, the second's instances: no such key
    assert not verdict(encode(["bytes[]", "uint256[][]", "bytes32[][]"],
                              [[b"", b""], parts, [list(digests[0]), list(digests[0])]]), named[1])
