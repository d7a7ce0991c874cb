"""ModelRegistry: registration rules, owner-only updates, events."""

from __future__ import annotations

import dataclasses

import pytest
from chain_helpers import PRICE, Chain, list_model

from proofmarket.chain import ProofMode, model_id_for, model_key
from proofmarket.core.errors import ContractReverted

pytestmark = pytest.mark.chain


def test_register_and_read_back(chain: Chain) -> None:
    listed = list_model(chain)
    model = chain.registry.get_model(listed.key)
    assert model.owner == chain.accounts.owner.address and model.active
    assert model.spec == listed.spec
    assert chain.registry.exists(listed.key) and not chain.registry.exists(b"\x01" * 32)


def test_a_squatter_cannot_take_or_poison_an_owners_model_id(chain: Chain) -> None:
    # Given the owner's listing of a CID
    listed = list_model(chain, "bafy-owned")
    owner, squatter = chain.accounts.owner, chain.accounts.stranger
    # When a squatter registers the same CID with its own verifier and price
    squatted = list_model(chain, "bafy-owned", owner=squatter, price=900_000_000)
    # Then it gets another id, and the owner's entry is untouched
    assert squatted.key != listed.key
    assert squatted.key == model_id_for(squatter.address, "bafy-owned")
    assert listed.key == model_id_for(owner.address, "bafy-owned")
    entry = chain.registry.get_model(listed.key)
    assert (entry.owner, entry.spec) == (owner.address, listed.spec)
    assert entry.key == model_key("bafy-owned") and chain.registry.get_model(squatted.key).owner == squatter.address
    # and the owner cannot register the same key twice
    with pytest.raises(ContractReverted, match="already registered"):
        chain.registry.register(model_key("bafy-owned"), listed.spec, owner)


def test_the_verifier_code_hash_is_recorded(chain: Chain) -> None:
    from eth_utils import keccak

    listed = list_model(chain)
    entry = chain.registry.get_model(listed.key)
    assert entry.verifier_codehash == keccak(chain.client.code_at(listed.verifier))


def test_instance_count_must_cover_an_output(chain: Chain) -> None:
    listed = list_model(chain)
    spec = dataclasses.replace(listed.spec, instance_count=listed.spec.input_instances)
    with pytest.raises(ContractReverted, match="below the minimum"):
        chain.registry.register(b"\x43" * 32, spec, chain.accounts.owner)


def test_only_the_owner_changes_price_metadata_and_activation(chain: Chain) -> None:
    listed, owner, stranger = list_model(chain), chain.accounts.owner, chain.accounts.stranger
    for change in (
        lambda who: chain.registry.update_price(listed.key, 1, who),
        lambda who: chain.registry.update_metadata(listed.key, "bafy-new", who),
        lambda who: chain.registry.set_active(listed.key, False, who),
    ):
        with pytest.raises(ContractReverted, match="does not own model"):
            change(stranger)
        change(owner)
    model = chain.registry.get_model(listed.key)
    assert (model.spec.price, model.spec.metadata_cid, model.active) == (1, "bafy-new", False)
    with pytest.raises(ContractReverted, match="price must be above zero"):
        chain.registry.update_price(listed.key, 0, owner)


def test_each_change_emits_an_event(chain: Chain) -> None:
    listed = list_model(chain)
    tx = chain.registry.update_price(listed.key, PRICE * 2, chain.accounts.owner)
    (event,) = chain.registry.decode_events(tx, "PriceUpdated")
    assert (event["oldPrice"], event["newPrice"]) == (PRICE, PRICE * 2)
    tx = chain.registry.set_active(listed.key, False, chain.accounts.owner)
    assert chain.registry.decode_events(tx, "ModelActivationChanged")[0]["active"] is False
    with pytest.raises(ContractReverted, match="ActivationUnchanged"):
        chain.registry.set_active(listed.key, False, chain.accounts.owner)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"owner_share_bps": 9_001}, "above the maximum of 9000 bps"),
        ({"price": 0}, "price must be above zero"),
        ({"input_instances": 0}, "NoInputInstances"),
        ({"proof_mode": ProofMode.HASHED_PARAMS}, "InvalidProofMode"),
        ({"params_commitment": 5}, "InvalidProofMode"),
        ({"instance_count": 1}, "below the minimum"),
    ],
)
def test_invalid_specs_are_refused(chain: Chain, overrides: dict[str, object], message: str) -> None:
    listed = list_model(chain)
    spec = dataclasses.replace(listed.spec, **overrides)  # type: ignore[arg-type]
    with pytest.raises(ContractReverted, match=message):
        chain.registry.register(b"\x42" * 32, spec, chain.accounts.owner)


def test_zero_model_id_is_refused(chain: Chain) -> None:
    listed = list_model(chain)
    with pytest.raises(ContractReverted, match="InvalidModelId"):
        chain.registry.register(bytes(32), listed.spec, chain.accounts.owner)
