"""The owner's key sends only what registers its own model (a review: ``register_listing`` signed and sent whatever
target and calldata the node's plan named, so a hostile node could have made the owner send any transaction)."""

from __future__ import annotations

import pytest
from web3 import Web3

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.commitments import model_key
from proofmarket.core.errors import RegistryMismatch
from proofmarket.sdk.onchain import check_plan

MODEL = "bafkreiabpcbva7w7la3qvaxlpibpty4p42v3o4ean6235s6mcgpa25vm3q"
OTHER = "bafkreice4fcjt6wj45du3vehrbxygo3aczku77ryddm7lsvqzjbzyggolm"
REGISTRY, VERIFIER = "0x" + "12" * 20, "0x" + "34" * 20
CODE = "0x6080604052" + "ab" * 40


def register(model: str = MODEL, verifier: str = VERIFIER, fn: str = "register") -> str:
    contract = Web3().eth.contract(abi=load_artifact("ModelRegistry").abi)
    if fn == "registerBatch":
        return str(contract.encode_abi("registerBatch", args=[model_key(model), 4, Web3.to_checksum_address(verifier)]))
    spec = (b"\x01" * 32, b"\x02" * 32, 3, b"\x04" * 32, Web3.to_checksum_address(verifier), 10_000, 9_000, 8, 9, 0,
            model)
    return str(contract.encode_abi("register", args=[model_key(model), spec]))


def test_the_plan_the_owner_asked_for_passes() -> None:
    check_plan({"step": "deploy_verifier", "data": CODE}, MODEL, CODE[2:] + "\n", REGISTRY)
    check_plan({"step": "register", "to": REGISTRY, "data": register()}, MODEL, CODE, REGISTRY, VERIFIER)


@pytest.mark.parametrize("step, field", [
    ({"step": "deploy_verifier", "data": CODE + "ff"}, "verifier_code"),  # other code deployed by the owner
    ({"step": "register", "to": REGISTRY, "data": register(OTHER)}, "model"),  # another model under the owner's name
    ({"step": "register", "to": REGISTRY, "data": register(verifier="0x" + "66" * 20)}, "verifier"),
    ({"step": "register", "to": "0x" + "77" * 20, "data": register()}, "registry"),  # a look-alike contract
    ({"step": "register", "to": REGISTRY, "data": register(fn="registerBatch")}, "function"),
    ({"step": "register", "to": REGISTRY, "data": "0xa9059cbb" + "00" * 64}, "data"),  # a token transfer
])
def test_a_plan_that_sends_anything_else_is_refused_before_sending(step: dict[str, str], field: str) -> None:
    with pytest.raises(RegistryMismatch) as refused:
        check_plan(step, MODEL, CODE, REGISTRY, VERIFIER)
    assert refused.value.details["field"] == field and "nothing sent" in refused.value.message
