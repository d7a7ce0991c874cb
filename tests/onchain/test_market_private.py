"""Hashed weights (``private`` profile): the registry holds the weights' Poseidon commitment and the
market refuses a proof whose params instance is another model's."""

from __future__ import annotations

import pytest
from market_helpers import SALT, Proofs, mlp_input

from proofmarket.chain import ProofMode
from proofmarket.core.errors import ContractReverted
from proofmarket.onchain import Market

pytestmark = [pytest.mark.slow, pytest.mark.chain]


def test_hashed_params_model_binds_its_weight_commitment(market: Market, private_model: str, proofs: Proofs) -> None:
    # Given the private model registered: its params commitment is computed from a witness, no proof
    registration = market.register_model(private_model, "1")
    spec = registration.spec
    assert spec.proof_mode == ProofMode.HASHED_INPUT | ProofMode.HASHED_PARAMS and spec.input_instances == 1

    # When a consumer requests an inference and the prover fulfils it
    receipt = market.request(private_model, mlp_input(), salt=SALT)
    result = market.fulfill(receipt.request_id)

    # Then it is paid, and the proof's params instance is the registered commitment
    assert result.settlement.valid
    bundle = market.workspace.store.get_json(result.bundle_cid)
    assert int(bundle["proof"]["instances"][1], 16) == spec.params_commitment != 0

    # A proof of the same salted input by the private-input model (weights fixed, no params instance)
    # opens the same input commitment but is refused: its instances do not carry these weights' commitment
    again = market.request(private_model, mlp_input(), salt=SALT)
    assert proofs.hashed.input.commitment == again.commitment
    with pytest.raises(ContractReverted, match="another model|public instances, the model has"):
        market.submit_proof(again.request_id, proofs.hashed)
