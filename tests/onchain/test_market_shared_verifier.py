"""Listings on the shared (reusable) verifier, real proofs on anvil: the second listing deploys nothing but a clone
pinning its VKA, requests settle through it, and a clone of another VKA or another reusable code is refused."""

from __future__ import annotations

import pytest
from market_helpers import MLP_CANDIDATE, OTHER_MLP_CANDIDATE, OWNER_SHARE_BPS, PRICE, Listed, compile_mlp, mlp_input

from proofmarket.chain import RequestStatus
from proofmarket.chain.shared import clone_code, parse_clone
from proofmarket.core.errors import RegistryMismatch, UsageError
from proofmarket.onchain import Market
from proofmarket.systems.ezkl.shared_verifier import shared_proof, vka_words
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture(scope="module")
def fresh(market_workspace: Workspace) -> Listed:
    """Three models no listing names yet (the session's market lists the shared fixtures' models)."""
    def compile_named(name: str, candidate: tuple[int, int, int, int]) -> str:
        return compile_mlp(market_workspace, "public", candidate, name=name).model_id

    return Listed(public=compile_named("shared-a", MLP_CANDIDATE), other=compile_named("shared-b", OTHER_MLP_CANDIDATE),
                  hashed=compile_named("own-c", MLP_CANDIDATE))


def own_listing_gas(market: Market, model_id: str) -> int:
    registration = market.register_model(model_id, PRICE, OWNER_SHARE_BPS)
    assert registration.verifier is not None and registration.tx is not None
    return registration.verifier.gas_used + registration.tx.gas_used


def test_a_listing_on_the_shared_verifier_costs_a_fifth_of_its_own_and_settles(market: Market, fresh: Listed) -> None:
    # Given the shared verifier already on the chain (a first model listed on it deployed it)
    first = market.register_model(fresh.other, PRICE, OWNER_SHARE_BPS, verifier="shared")
    assert first.verifier is not None and first.verifier.shared and not first.verifier.reused

    # When a second model is listed on it
    second = market.register_model(fresh.public, PRICE, OWNER_SHARE_BPS, verifier="shared")
    assert second.verifier is not None and second.tx is not None
    shared_gas = second.verifier.gas_used + second.tx.gas_used

    # Then its verifier is a clone pinning its VKA on the same reusable verifier, for a fifth of the gas or less
    clone = parse_clone(market.client.code_at(second.spec.verifier))
    assert clone is not None and clone[1] == parse_clone(market.client.code_at(first.spec.verifier))[1]  # type: ignore[index]
    manifest = market.manifest(fresh.public)
    assert manifest.shared_verifier is not None and "0x" + clone[2].hex() == manifest.shared_verifier.vka_digest
    snapshot = market.client.rpc("evm_snapshot", [])
    try:
        own = own_listing_gas(market, fresh.hashed)
    finally:
        market.client.rpc("evm_revert", [snapshot])
    assert shared_gas <= own // 5, (shared_gas, own)

    # and a request is checked against the registry and settled through the clone
    market.check_entry(fresh.public, market.onchain_id(fresh.public))
    receipt = market.request(fresh.public, mlp_input())
    result = market.fulfill(receipt.request_id)
    assert result.settlement.valid
    assert market.market.get_request(receipt.request_id).status is RequestStatus.FULFILLED


def test_the_clone_refuses_another_models_vka(market: Market, fresh: Listed) -> None:
    a = market.register_model(fresh.public, PRICE, OWNER_SHARE_BPS, verifier="shared")
    market.register_model(fresh.other, PRICE, OWNER_SHARE_BPS, verifier="shared")
    receipt = market.request(fresh.public, mlp_input())
    proved = market.workspace.prover.prove(fresh.public, mlp_input()).bundle
    other = market.manifest(fresh.other).shared_verifier
    assert other is not None
    # the prover sends model A's proof with model B's VKA (registered on the same reusable verifier)
    forged = shared_proof(vka_words(market.workspace.store.get(other.vka.cid)), bytes.fromhex(proved.proof.hex[2:]))
    market.claim(market.market.get_request(receipt.request_id))
    settlement = market.market.fulfill(receipt.request_id, forged, [int(v, 16) for v in proved.proof.instances],
                                       market.accounts.prover)
    assert not settlement.valid and a.verifier is not None  # refused: refunded and slashed


def test_a_listing_on_a_clone_of_another_vka_is_not_the_model(market: Market, fresh: Listed) -> None:
    # Given model B listed on the shared verifier, and an owner listing model A with B's clone as its verifier
    b = market.register_model(fresh.other, PRICE, OWNER_SHARE_BPS, verifier="shared")
    own = market.register_model(fresh.public, PRICE, OWNER_SHARE_BPS)  # A's honest listing, for its spec
    from dataclasses import replace

    from proofmarket.chain import model_key

    spec = replace(own.spec, verifier=b.spec.verifier)
    market.registry.register(model_key(fresh.public), spec, market.accounts.consumer)
    key = market.onchain_id(fresh.public, market.accounts.consumer.address)
    with pytest.raises(RegistryMismatch) as err:
        market.check_entry(fresh.public, key)
    assert err.value.details["field"] == "vka_digest"


def test_clone_code_is_what_the_factory_deploys(market: Market, fresh: Listed) -> None:
    reg = market.register_model(fresh.public, PRICE, OWNER_SHARE_BPS, verifier="shared")
    code = market.client.code_at(reg.spec.verifier)
    implementation, reusable, digest = parse_clone(code)  # type: ignore[misc]
    assert implementation.lower() == (market.deployment.shared_verifier or "").lower()
    assert clone_code(implementation, reusable, digest) == code
    assert parse_clone(code[:-1]) is None and parse_clone(market.client.code_at(reusable)) is None


def test_the_verifier_kind_is_checked(market: Market, fresh: Listed) -> None:
    with pytest.raises(UsageError, match="'own' or 'shared'"):
        market.register_model(fresh.public, PRICE, OWNER_SHARE_BPS, verifier="cheap")


def test_a_listing_on_a_clone_whose_vka_was_never_registered_is_refused(market: Market, fresh: Listed) -> None:
    """Proofs through it would all revert ("VKA not registered"): a prover would be slashed for good proofs."""
    from proofmarket.chain import model_key
    from proofmarket.chain.shared import SharedVerifierFactory

    b = market.register_model(fresh.other, PRICE, OWNER_SHARE_BPS, verifier="shared")  # the reusable verifier exists
    reusable = parse_clone(market.client.code_at(b.spec.verifier))[1]  # type: ignore[index]
    shared = market.manifest(fresh.hashed).shared_verifier
    assert shared is not None and market.deployment.shared_verifier is not None
    factory = SharedVerifierFactory(market.client, market.deployment.shared_verifier)
    digest = bytes.fromhex(shared.vka_digest[2:])
    assert not factory.vka_registered(reusable, digest)
    factory.clone(reusable, digest, market.accounts.consumer)  # anyone may make a clone; nothing registers the VKA
    own = market.register_model(fresh.public, PRICE, OWNER_SHARE_BPS)  # a spec to copy (same circuit as fresh.hashed)
    from dataclasses import replace

    spec = replace(own.spec, verifier=factory.verifier_for(reusable, digest))
    market.registry.register(model_key(fresh.hashed), spec, market.accounts.consumer)
    with pytest.raises(RegistryMismatch) as err:
        market.check_entry(fresh.hashed, market.onchain_id(fresh.hashed, market.accounts.consumer.address))
    assert err.value.details["field"] == "vka_registered"
