"""Privacy profiles: a hashed input is committed with a salt; hashed params add a weight commitment."""

from __future__ import annotations

import json

import ezkl
import pytest
from zk_helpers import compile_sample

from proofmarket.systems.ezkl.compiler import CompileResult
from proofmarket.systems.ezkl.felts import felt_to_uint
from proofmarket.systems.ezkl.profile import SALT_ELEMENTS
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hashed_mlp(prover: EzklProver, srs_provider: SrsProvider) -> CompileResult:
    return compile_sample(prover, srs_provider, "mlp", "private-input", candidates=[Candidate(256, 3, 7, 4)])


def test_hashed_input_bundle_hides_the_input(hashed_mlp: CompileResult, prover: EzklProver, mlp_input) -> None:
    result = prover.prove(hashed_mlp.model_id, mlp_input)
    bundle = result.bundle
    assert bundle.input.visibility == "hashed" and bundle.input.values is None
    assert bundle.layout.input == 1
    assert result.salt is not None and len(result.salt) == SALT_ELEMENTS
    assert prover.verify(bundle).valid


def test_salt_opens_the_input_commitment(hashed_mlp: CompileResult, prover: EzklProver, mlp_input) -> None:
    """Whoever holds the input and the salt can recompute the public Poseidon commitment."""
    result = prover.prove(hashed_mlp.model_id, mlp_input)
    assert result.salt is not None
    scale = json.loads(prover.store.get(hashed_mlp.manifest.settings.cid))["model_input_scales"][0]
    values = mlp_input["input_data"][0] + [float(s) for s in result.salt]
    felts = [ezkl.float_to_felt(v, scale) for v in values]
    commitment = felt_to_uint(ezkl.poseidon_hash(felts)[0])
    assert int(result.bundle.proof.instances[0], 16) == commitment


def test_two_proofs_of_the_same_input_have_different_commitments(hashed_mlp, prover, mlp_input) -> None:
    a = prover.prove(hashed_mlp.model_id, mlp_input).bundle
    b = prover.prove(hashed_mlp.model_id, mlp_input).bundle
    assert a.input.commitment != b.input.commitment
    assert a.output.values == b.output.values


def test_hashed_params_publish_a_weight_commitment(prover: EzklProver, srs_provider: SrsProvider, mlp_input) -> None:
    model = compile_sample(prover, srs_provider, "mlp", "private", candidates=[Candidate(256, 3, 7, 4)])
    assert model.manifest.layout.params >= 1
    result = prover.prove(model.model_id, mlp_input)
    assert prover.verify(result.bundle).valid


def test_commitment_computed_before_proving_matches_the_bundle(hashed_mlp, prover, mlp_input, mlp) -> None:
    """What an escrow consumer commits to on chain equals what the proof binds, for both profiles."""
    from proofmarket import models
    from proofmarket.systems.ezkl.commitment import input_commitment

    for compiled, salt in ((hashed_mlp, list(range(SALT_ELEMENTS))), (mlp, None)):
        manifest, info = prover.model(compiled.model_id)
        arrays = models.parse_inputs(mlp_input, info)
        expected = input_commitment(prover.store, manifest, arrays, salt)
        bundle = prover.prove(compiled.model_id, mlp_input, salt=salt).bundle
        assert bundle.input.commitment == expected.commitment
        assert [int(i, 16) for i in bundle.proof.instances[: len(expected.instances)]] == expected.instances
