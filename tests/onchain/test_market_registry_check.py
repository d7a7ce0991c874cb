"""A listing is checked against the model's manifest before anyone escrows for it or proves it.

Real compiled models on anvil: a squatter lists the honest owner's model CID under its own id with
another model's verifier and a 900 USDC price; the honest listing keeps its id; a consumer naming the
squatter as owner is refused before any money moves (``registry_mismatch``, field ``verifier_code``); a
price above the consumer's cap is refused (field ``price``); a deactivated listing is refused (field
``active``); the node's watcher never proves for the squatter's id."""

from __future__ import annotations

import pytest
from market_helpers import OWNER_SHARE_BPS, Balances, Listed, Proofs, mlp_input

from proofmarket.chain import dev_account, model_key
from proofmarket.core.errors import RegistryMismatch
from proofmarket.onchain import Market
from proofmarket.onchain.spec import model_spec

pytestmark = [pytest.mark.slow, pytest.mark.chain]

SQUATTER_INDEX = 6


def squat(market: Market, model_id: str, verifier_of: str, price: int) -> str:
    """List ``model_id`` under a squatter's own id, with the verifier of ``verifier_of`` (returns the owner)."""
    squatter = dev_account(SQUATTER_INDEX, market.client.chain_id)
    verifier = market.deploy_verifier(verifier_of).address
    spec = model_spec(market.manifest(model_id), market.workspace.store, verifier=verifier, price=price,
                      owner_share_bps=OWNER_SHARE_BPS, metadata_cid=model_id)
    market.registry.register(model_key(model_id), spec, squatter)
    return squatter.address


def test_a_squatted_listing_is_refused_before_any_money_moves(market: Market, models: Listed) -> None:
    honest = market.registry.get_model(market.onchain_id(models.public))
    squatter = squat(market, models.public, verifier_of=models.other, price=900_000_000)
    # the honest owner's id and entry are untouched
    assert market.registry.get_model(market.onchain_id(models.public)) == honest
    assert market.onchain_id(models.public, squatter) != market.onchain_id(models.public)
    balances = Balances(market)

    with pytest.raises(RegistryMismatch) as info:
        market.request(models.public, mlp_input(), owner=squatter)

    assert info.value.code == "registry_mismatch" and info.value.details["field"] == "verifier_code"
    assert balances.delta() == {"consumer": 0, "owner": 0, "prover": 0, "escrow": 0}


def test_a_price_above_the_cap_and_a_deactivated_listing_are_refused(market: Market, models: Listed) -> None:
    balances = Balances(market)
    with pytest.raises(RegistryMismatch) as info:
        market.request(models.public, mlp_input(), max_price=1_000_000)  # listed at 2.5 USDC
    assert info.value.details["field"] == "price"

    market.set_active(models.public, False)
    with pytest.raises(RegistryMismatch) as info:
        market.request(models.public, mlp_input())
    assert info.value.details["field"] == "active"
    assert balances.delta() == {"consumer": 0, "owner": 0, "prover": 0, "escrow": 0}

    market.set_active(models.public, True)
    assert market.request(models.public, mlp_input(), max_price=2_500_000).amount == 2_500_000


def test_a_listing_whose_verifier_is_not_the_manifests_is_refused(market: Market, models: Listed) -> None:
    """An owner's listing with a wrong verifier (e.g. another model's): the check that runs before a prover
    claims or proves (``Market.fulfill``, the node's watcher) refuses it, so nobody is slashed by it."""
    lister = dev_account(SQUATTER_INDEX + 1, market.client.chain_id)
    spec = model_spec(market.manifest(models.hashed), market.workspace.store,
                      verifier=market.deploy_verifier(models.other).address, price=1_000_000,
                      owner_share_bps=OWNER_SHARE_BPS, metadata_cid=models.hashed)
    market.registry.register(model_key(models.hashed), spec, lister)
    onchain_id = market.onchain_id(models.hashed, lister.address)

    with pytest.raises(RegistryMismatch) as info:
        market.check_entry(models.hashed, onchain_id)

    assert info.value.details["field"] == "verifier_code"
    market.check_entry(models.hashed, market.onchain_id(models.hashed))  # the honest listing passes


def test_verify_onchain_uses_only_a_listing_whose_verifier_is_the_models_own(market: Market, models: Listed,
                                                                            proofs: Proofs) -> None:
    """Issue 71: anyone may list a model's key with a verifier of their own (one that says true to anything). The
    on-chain check runs the proof only through a listing whose verifier is the model's own code, names the owners of
    those, and refuses the squatter's listing when asked for it by owner."""
    from proofmarket.chain.onchain_verify import verify_on_chain
    from proofmarket.cli.verify_cmd import own_verifier_check

    squatter = squat(market, models.public, verifier_of=models.other, price=1)
    bundle = proofs.mlp.to_doc()
    own = own_verifier_check(market.client, market.workspace.store, models.public)
    found = verify_on_chain(market.client, market.registry, bundle, own=own)
    assert found.owner == market.accounts.owner.address and found.owners == [found.owner] and found.checked_own
    with pytest.raises(RegistryMismatch) as info:
        verify_on_chain(market.client, market.registry, bundle, owner=squatter, own=own)
    assert info.value.code == "registry_mismatch" and info.value.details["field"] == "verifier_code"
    assert squatter in str(info.value.details["refused"])
