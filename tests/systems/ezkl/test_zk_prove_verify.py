"""Real proofs: the round trip, and every way a bundle can be tampered with."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
from eth_abi import encode as abi_encode

from proofmarket import models
from proofmarket.core.errors import (
    ArtifactNotFound,
    BundleError,
    InputShapeError,
    NonFiniteInput,
    UnknownModel,
    VerificationFailed,
)
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.compiler import CompileResult
from proofmarket.systems.ezkl.prover import EzklProver, ProveResult
from proofmarket.systems.ezkl.verify import VERIFY_PROOF_SELECTOR, verify_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def proved(prover: EzklProver, mlp: CompileResult, mlp_input: dict[str, Any]) -> ProveResult:
    return prover.prove(mlp.model_id, mlp_input)


@pytest.fixture
def bundle(proved: ProveResult) -> dict[str, Any]:
    return copy.deepcopy(proved.bundle.to_doc())


def _flip_hex(text: str, index: int) -> str:
    digit = text[index]
    return text[:index] + ("1" if digit == "0" else "0") + text[index + 1:]


def _recalldata(doc: dict[str, Any]) -> None:
    """Re-encode the calldata so that only the proof check can catch the tampering."""
    proof = bytes.fromhex(doc["proof"]["hex"][2:])
    instances = [int(i, 16) for i in doc["proof"]["instances"]]
    doc["proof"]["evm_calldata"] = "0x" + VERIFY_PROOF_SELECTOR + abi_encode(["bytes", "uint256[]"],
                                                                             [proof, instances]).hex()


def test_proof_round_trip_matches_onnxruntime(proved: ProveResult, prover: EzklProver, mlp: CompileResult,
                                              mlp_input: dict[str, Any]) -> None:
    got = np.array(proved.bundle.output.values[0])
    want = np.array(reference(prover, mlp.model_id, mlp_input)[0])
    assert np.max(np.abs(got - want)) <= mlp.report.error_limit
    assert int(np.argmax(got)) == int(np.argmax(want))
    report = prover.verify(proved.bundle)
    assert report.valid and report.model_id == mlp.model_id and report.srs_kind == "dev"


def test_bundle_is_stored_under_its_cid(proved: ProveResult, prover: EzklProver) -> None:
    assert prover.store.get_json(proved.bundle_cid) == proved.bundle.to_doc()


def test_verification_needs_only_the_bundle_and_public_artifacts(
    proved: ProveResult, mlp: CompileResult, prover: EzklProver, tmp_path
) -> None:
    # a fresh store holding just the manifest and its public artifacts (no proving key)
    fresh = LocalStore(tmp_path / "fresh")
    for cid in [mlp.model_id, *mlp.manifest.public_cids]:
        fresh.put(prover.store.get(cid))
    assert not fresh.has(mlp.manifest.pk.cid)
    assert verify_bundle(proved.bundle.to_doc(), fresh).valid


def test_missing_artifact_is_reported_not_judged(proved: ProveResult, tmp_path) -> None:
    with pytest.raises(ArtifactNotFound):
        verify_bundle(proved.bundle.to_doc(), LocalStore(tmp_path / "empty"))


@pytest.mark.parametrize("index", [10, 400, 2000])
def test_one_flipped_proof_byte_is_rejected_by_the_proof_check(bundle, prover, index) -> None:
    bundle["proof"]["hex"] = _flip_hex(bundle["proof"]["hex"], 2 + index * 2)
    _recalldata(bundle)
    with pytest.raises(VerificationFailed, match="proof does not verify"):
        prover.verify(bundle)


def test_flipped_byte_without_matching_calldata_is_rejected(bundle, prover) -> None:
    bundle["proof"]["hex"] = _flip_hex(bundle["proof"]["hex"], 100)
    with pytest.raises(VerificationFailed):
        prover.verify(bundle)


def test_changed_output_value_is_rejected(bundle, prover) -> None:
    bundle["output"]["values"][0][0] += 0.5
    with pytest.raises(VerificationFailed, match="output values"):
        prover.verify(bundle)


def test_changed_output_instance_is_rejected(bundle, prover, mlp) -> None:
    # change the last public instance (an output) and every derived field consistently
    from proofmarket.systems.ezkl.felts import keccak_packed

    value = int(bundle["proof"]["instances"][-1], 16) + 1
    bundle["proof"]["instances"][-1] = "0x" + value.to_bytes(32, "big").hex()
    outs = [int(i, 16) for i in bundle["proof"]["instances"][-mlp.manifest.layout.output:]]
    bundle["output"]["hash"] = keccak_packed(outs)
    _recalldata(bundle)
    with pytest.raises(VerificationFailed):
        prover.verify(bundle)


def test_changed_public_input_is_rejected(bundle, prover) -> None:
    bundle["input"]["values"][0][0] += 1.0
    with pytest.raises(VerificationFailed, match="input values"):
        prover.verify(bundle)


def test_bundle_pointed_at_another_model_is_rejected(bundle, prover, logreg: CompileResult) -> None:
    bundle["model"]["id"] = logreg.model_id
    with pytest.raises(VerificationFailed, match="not the one of model"):
        prover.verify(bundle)


def test_bundle_with_another_models_keys_is_rejected(bundle, prover, logreg: CompileResult) -> None:
    m = logreg.manifest
    bundle["model"].update(id=logreg.model_id, settings_cid=m.settings.cid, vk_cid=m.vk.cid,
                           vk_digest=m.vk.sha256, onnx_sha256=m.onnx.sha256,
                           srs={"cid": m.srs.cid, "sha256": m.srs.sha256, "kind": m.srs.kind,
                                "logrows": m.srs.logrows})
    bundle["layout"] = m.layout.model_dump()
    with pytest.raises(VerificationFailed):
        prover.verify(bundle)


@pytest.mark.parametrize("mutate, error", [
    (lambda b: b.update(format="something-else"), BundleError),
    (lambda b: b.update(version=99), BundleError),
    (lambda b: b.pop("proof"), BundleError),
    (lambda b: b["proof"].update(hex="0xzz"), VerificationFailed),
])
def test_malformed_bundles_are_rejected(bundle, prover, mutate, error) -> None:
    mutate(bundle)
    with pytest.raises(error):
        prover.verify(bundle)


def test_bad_inputs_get_named_errors_and_store_nothing(prover: EzklProver, mlp: CompileResult, tmp_path) -> None:
    before = sorted(prover.store.root.rglob("*"))
    with pytest.raises(NonFiniteInput):
        prover.prove(mlp.model_id, {"inputs": {"x": [[float("nan")] + [0.0] * 7]}})
    with pytest.raises(InputShapeError):
        prover.prove(mlp.model_id, {"inputs": {"x": [[0.0] * 5]}})
    with pytest.raises(UnknownModel):
        prover.prove("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", {"input_data": [[0.0] * 8]})
    assert sorted(prover.store.root.rglob("*")) == before


def test_a_json_round_trip_keeps_the_bundle_valid(proved: ProveResult, prover: EzklProver) -> None:
    doc = json.loads(json.dumps(proved.bundle.to_doc()))
    assert prover.verify(doc).valid


def test_new_bundles_are_v2_and_say_they_are_proven(bundle) -> None:
    assert bundle["version"] == 2 and bundle["mode"] == "proven"
    assert bundle["proof"]["system"] == "ezkl-halo2-kzg-bn254"


def test_a_v1_bundle_still_verifies_and_keeps_its_cid(bundle, prover: EzklProver) -> None:
    """Bundles made before attested mode (version 1, no ``mode``) are read, verified and re-serialised as they were."""
    from proofmarket.systems import verify_bundle_any
    from proofmarket.systems.ezkl.bundle import ProofBundle
    from proofmarket.systems.receipts import pure_bundle_cid

    v1 = {k: v for k, v in bundle.items() if k != "mode"}
    v1["version"] = 1
    parsed = ProofBundle.parse(v1)
    assert parsed.mode is None and parsed.to_doc() == v1
    assert pure_bundle_cid(parsed) == prover.store.put_json(v1)  # the CID a v1 receipt signed is unchanged
    assert prover.verify(v1).valid
    assert verify_bundle_any(v1, prover.store).mode == "proven"
    with pytest.raises(BundleError):
        ProofBundle.parse({**v1, "mode": "proven"})  # a v1 bundle has no mode


def test_a_v1_manifest_still_loads_as_proven(prover: EzklProver, mlp: CompileResult) -> None:
    from proofmarket.systems import mode_of, parse_manifest

    doc = prover.store.get_json(mlp.model_id)
    assert doc["version"] == 2 and doc["mode"] == "proven" and doc["system"] == "ezkl-halo2-kzg-bn254"
    v1 = {k: v for k, v in doc.items() if k not in ("mode", "system")}
    v1["version"] = 1
    manifest = parse_manifest(v1)
    assert mode_of(manifest) == "proven" and manifest.vk == mlp.manifest.vk


def reference(prover: EzklProver, model_id: str, doc: dict[str, Any]) -> list[list[float]]:
    """onnxruntime on the input: what the proof's output is compared with (the prove path runs no reference)."""
    manifest, info = prover.model(model_id)
    arrays = models.parse_inputs(doc, info)
    return [r.ravel().tolist() for r in models.run_onnx(prover.store.path(manifest.onnx.cid), arrays)]


def test_a_bundle_stored_before_rfc_8785_keeps_its_cid(bundle) -> None:
    """A bundle holding an integral float (a score of exactly 0.0 or 1.0, a timing) had other bytes under the legacy
    canonical JSON: the CID it was stored and signed under is still taken as its own; no other CID is."""
    from proofmarket.core.canonical import legacy_canonical_json
    from proofmarket.store import cid_for_bytes
    from proofmarket.systems.ezkl.bundle import ProofBundle
    from proofmarket.systems.receipts import bundle_cid_as, pure_bundle_cid, pure_bundle_cids

    doc = {**bundle, "timings": {**(bundle.get("timings") or {}), "prove_s": 1.0}}
    parsed = ProofBundle.parse(doc)
    pure = parsed.model_copy(update={"payment": None, "receipt": None}).to_doc()
    legacy = cid_for_bytes(legacy_canonical_json(pure))
    assert pure_bundle_cids(parsed) == [pure_bundle_cid(parsed), legacy] and legacy != pure_bundle_cid(parsed)
    assert bundle_cid_as(parsed, legacy) == legacy
    other = pure_bundle_cid(ProofBundle.parse(bundle))
    assert bundle_cid_as(parsed, other) == pure_bundle_cid(parsed) != other
