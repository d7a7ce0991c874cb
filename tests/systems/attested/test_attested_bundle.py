"""The attested bundle without re-execution: signature, hashes, bindings, and the errors for bad models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from proofmarket.core.errors import (
    BundleError,
    MaxTokensOverCap,
    ModelFilesMissing,
    NotCausalLM,
    PromptTooLong,
    VerificationFailed,
    WrongMode,
)
from proofmarket.systems.workspace import Workspace


@pytest.fixture(scope="module")
def doc(attested_ws: Workspace, lm_id: str) -> dict[str, Any]:
    execution = attested_ws.attested.run(lm_id, {"prompt": "the market", "max_tokens": 40})
    bundle, cid = execution.bundle, execution.bundle_cid
    assert attested_ws.store.get_json(cid) == bundle.to_doc()
    return bundle.to_doc()


def test_the_bundle_says_attested_and_what_it_commits_to(doc: dict[str, Any], attested_ws: Workspace,
                                                         lm_id: str) -> None:
    manifest = attested_ws.store.get_json(lm_id)
    assert manifest["mode"] == "attested" and manifest["system"] == "proofmarket-attested-toploc-v1"
    assert manifest["weights"]["root"].startswith("0x") and "runtime" not in manifest  # no part of the id
    assert manifest["generation"]["max_tokens_cap"] == 128
    assert doc["mode"] == "attested" and doc["version"] == 2
    assert doc["proof"]["system"] == "proofmarket-attested-toploc-v1"
    assert doc["model"]["weights_root"] == manifest["weights"]["root"]
    assert len(doc["output"]["tokens"]) == 40 and len(doc["proof"]["commitments"]) == 2
    assert doc["proof"]["attestation"]["typedData"]["primaryType"] == "AttestedInference"
    report = attested_ws.verify(doc)
    assert report.mode == "attested" and report.reexecuted is False
    assert any("nothing was re-executed" in c for c in report.checks)


def _sign_by_another(doc: dict[str, Any]) -> str:
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    typed = doc["proof"]["attestation"]["typedData"]
    signed = Account.create().sign_message(encode_typed_data(full_message=typed))
    return "0x" + bytes(signed.signature).hex()


def _flip(value: str) -> str:
    return value[:-1] + ("1" if value[-1] != "1" else "2")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["proof"]["attestation"].update(signature=_flip(d["proof"]["attestation"]["signature"])),
     "signature is invalid"),
    (lambda d: d["proof"]["attestation"].update(signature=_sign_by_another(d)), "signed it"),
    (lambda d: d["input"].update(tokens=d["input"]["tokens"][:-1]), "input commitment"),
    (lambda d: d["output"].update(tokens=d["output"]["tokens"][:-1]), "output hash"),
    (lambda d: d["proof"]["commitments"].__setitem__(0, _flip(d["proof"]["commitments"][0])), "commitments hash"),
    (lambda d: d["decoding"].update(seed=5), "does not sign"),
    (lambda d: d["model"].update(weights_root="0x" + "11" * 32), "does not sign"),
    (lambda d: d["model"].update(id="bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"), "does not sign"),
    (lambda d: d["proof"]["attestation"].update(signer="0x" + "22" * 20), "signer"),
    (lambda d: d["prover"].update(address="0x" + "22" * 20), "prover"),
])
def test_a_tampered_bundle_is_refused_without_re_execution(doc, attested_ws: Workspace, mutate, message) -> None:
    bad = json.loads(json.dumps(doc))
    mutate(bad)
    with pytest.raises(VerificationFailed, match=message):
        attested_ws.verify(bad)


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(version=1), lambda d: d.pop("proof"), lambda d: d["proof"].update(system="other"),
    lambda d: d.update(format="nope"),
])
def test_a_malformed_bundle_is_a_bundle_error(doc, attested_ws: Workspace, mutate) -> None:
    bad = json.loads(json.dumps(doc))
    mutate(bad)
    with pytest.raises(BundleError):
        attested_ws.verify(bad)


def test_requests_over_the_cap_or_the_context_are_refused(attested_ws: Workspace, lm_id: str) -> None:
    with pytest.raises(MaxTokensOverCap):
        attested_ws.attested.run(lm_id, {"prompt": "hi", "max_tokens": 129})
    with pytest.raises(PromptTooLong):
        attested_ws.attested.run(lm_id, {"prompt": "proof market " * 300, "max_tokens": 16})


def test_a_proven_call_on_an_attested_model_names_the_mode(attested_ws: Workspace, lm_id: str) -> None:
    with pytest.raises(WrongMode):
        attested_ws.prove(lm_id, {"input_data": [[0.0]]})


def test_model_directories_with_missing_files_are_named(attested_ws: Workspace, lm_dir: Path, tmp_path: Path) -> None:
    for missing, named in [("config.json", "config.json"), ("model.safetensors", "safetensors"),
                           ("tokenizer.json", "tokenizer")]:
        broken = tmp_path / f"no-{missing}"
        shutil.copytree(lm_dir, broken)
        (broken / missing).unlink()
        if missing == "tokenizer.json":
            (broken / "tokenizer_config.json").unlink()
        with pytest.raises(ModelFilesMissing, match=named):
            attested_ws.compile_attested(broken)
    pickled = tmp_path / "pickled"
    shutil.copytree(lm_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelFilesMissing, match="pickled weights are refused"):
        attested_ws.compile_attested(pickled)
    with pytest.raises(ModelFilesMissing, match="not a directory"):
        attested_ws.compile_attested(tmp_path / "nowhere")


def test_a_model_that_is_not_a_causal_lm_is_refused(attested_ws: Workspace, lm_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "classifier"
    shutil.copytree(lm_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotCausalLM):
        attested_ws.compile_attested(other)
    config["architectures"] = []
    config["model_type"] = "vit"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises((NotCausalLM, ModelFilesMissing)):
        attested_ws.compile_attested(other)


def test_max_tokens_defaults_to_64_or_the_cap(attested_ws: Workspace, lm_id: str, lm_dir: Path) -> None:
    assert attested_ws.attested.runtime.request(lm_id, {"prompt": "hi"}).max_tokens == 64
    small, _ = attested_ws.compile_attested(lm_dir, max_tokens_cap=16)
    assert small != lm_id  # other terms, another manifest, another model id
    execution = attested_ws.attested.run(small, {"prompt": "hi"})
    bundle = execution.bundle
    assert bundle.decoding.max_tokens == 16 == len(bundle.output.tokens)


def test_a_bundle_signed_before_rfc_8785_still_verifies(doc: dict[str, Any], attested_ws: Workspace) -> None:
    """Greedy decoding has temperature 0.0: RFC 8785 writes 0, the legacy form 0.0, so the decoding hashes differ.
    A bundle whose attestation signs the legacy hash verifies for one more release; any other hash does not."""
    from eth_utils.crypto import keccak

    from proofmarket.core.canonical import legacy_canonical_json
    from proofmarket.systems.attested.documents import AttestedBundle, bundle_fields, sign_attestation

    bundle = AttestedBundle.model_validate(doc)
    fields = bundle_fields(bundle)
    legacy = "0x" + keccak(legacy_canonical_json(bundle.decoding.model_dump(mode="json"))).hex()
    assert legacy != fields["decoding_hash"]
    chain_id = int(bundle.proof.attestation.typedData["domain"]["chainId"])
    for decoding_hash, valid in ((legacy, True), ("0x" + "11" * 32, False)):
        signed = sign_attestation(attested_ws.attested.signer, {**fields, "decoding_hash": decoding_hash}, chain_id)
        old = bundle.model_copy(update={"proof": bundle.proof.model_copy(update={"attestation": signed})})
        if valid:
            assert attested_ws.verify(old.to_doc()).valid
        else:
            with pytest.raises(VerificationFailed, match="does not sign"):
                attested_ws.verify(old.to_doc())


def test_a_request_committed_before_rfc_8785_opens_and_its_instances_are_judged_honest(
        doc: dict[str, Any]) -> None:
    """A greedy request (temperature 0.0) committed in the legacy canonical form opens in that form, the fulfilment
    hashes it the same way, and a judge takes the instances of either form (never a false "cheated")."""
    from eth_utils.crypto import keccak

    from proofmarket.core.canonical import legacy_canonical_json
    from proofmarket.systems.attested.documents import AttestedBundle
    from proofmarket.systems.attested.instances import (
        escrow_request,
        input_commitment,
        instance_candidates,
        instances_of,
        opening,
    )

    bundle = AttestedBundle.model_validate(doc)
    request = {"prompt": bundle.input.prompt, "max_tokens": bundle.decoding.max_tokens,
               "temperature": bundle.decoding.temperature, "seed": bundle.decoding.seed}
    legacy_hash = int.from_bytes(keccak(legacy_canonical_json(escrow_request(request))), "big")
    legacy_commitment = "0x" + keccak(legacy_hash.to_bytes(32, "big")).hex()
    assert legacy_commitment != input_commitment(request)
    assert opening(request, legacy_commitment) == (legacy_commitment, 1)
    assert opening(request, input_commitment(request)) == (input_commitment(request), 0)
    assert instances_of(bundle, request, 1)[0] == legacy_hash
    candidates = instance_candidates(bundle, request)
    assert instances_of(bundle, request) in candidates and instances_of(bundle, request, 1) in candidates
    forged = instances_of(bundle, request)
    forged[4] ^= 1  # another output
    assert forged not in candidates
