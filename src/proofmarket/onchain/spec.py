"""What the registry records about a compiled model, read from its manifest.

- ONNX sha256 and vk digest: the manifest's ``onnx.sha256`` and ``vk.sha256``;
- settings hash: sha256 of the settings artifact;
- instance count: input + params + output instances (a proof with another count is refused);
- input instances: ``layout.input`` (input values for a public input, one Poseidon hash per input
  tensor for a hashed one); proof mode bits from the privacy profile;
- params commitment (hashed params only): the Poseidon hash of the weights, a public instance of every
  proof. It does not depend on the input, so it is read from a witness of an all-zero input
  (milliseconds, no proof). The market checks one params instance: a model with more is refused.

An attested causal LM is recorded as: ``onnxSha256`` = the weights' Merkle root, ``vkDigest`` = keccak256 of the
system id, ``settingsHash`` = sha256 of the manifest (its CID's digest), one input instance, five instances, verifier
= an ``AttestationVerifier(attester, weightsRoot)`` (the node the owner names signs fulfilments); the escrow price is
per request (up to its ``max_tokens``). Its instance rules: ``proofmarket.systems.attested.instances``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from proofmarket.chain.types import ModelSpec, ProofMode
from proofmarket.core.errors import UsageError
from proofmarket.store import LocalStore
from proofmarket.store.cid import digest_of
from proofmarket.systems.attested.documents import AttestedManifest
from proofmarket.systems.attested.instances import INPUT_INSTANCES, INSTANCE_COUNT, system_digest
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.felts import felt_to_uint
from proofmarket.systems.ezkl.manifest import ModelManifest

ATTESTED_VERIFIER = "AttestationVerifier"  # the contract an attested listing names as its verifier


def proof_mode(manifest: ModelManifest) -> ProofMode:
    mode = ProofMode.PUBLIC
    if manifest.privacy["input"] == "hashed":
        mode |= ProofMode.HASHED_INPUT
    if manifest.privacy["params"] == "hashed":
        mode |= ProofMode.HASHED_PARAMS
    return mode


def model_spec(manifest: ModelManifest, store: LocalStore, *, verifier: str, price: int, owner_share_bps: int,
               metadata_cid: str) -> ModelSpec:
    mode = proof_mode(manifest)
    return ModelSpec(
        onnx_sha256=bytes.fromhex(manifest.onnx.sha256),
        vk_digest=bytes.fromhex(manifest.vk.sha256),
        settings_hash=bytes.fromhex(manifest.settings.sha256),
        verifier=verifier,
        price=price,
        owner_share_bps=owner_share_bps,
        input_instances=manifest.layout.input,
        instance_count=instance_count(manifest),
        proof_mode=mode,
        params_commitment=params_commitment(manifest, store) if mode & ProofMode.HASHED_PARAMS else 0,
        metadata_cid=metadata_cid,
    )


def attested_spec(manifest: AttestedManifest, model_id: str, *, verifier: str, price: int, owner_share_bps: int,
                  metadata_cid: str) -> ModelSpec:
    if manifest.kind != "causal-lm":
        raise UsageError("escrow for attested models takes causal LMs (attested ONNX models are sold over x402)")
    return ModelSpec(onnx_sha256=bytes.fromhex(manifest.weights.root.removeprefix("0x")), vk_digest=system_digest(),
                     settings_hash=digest_of(model_id), verifier=verifier, price=price,
                     owner_share_bps=owner_share_bps, input_instances=INPUT_INSTANCES, instance_count=INSTANCE_COUNT,
                     proof_mode=ProofMode.PUBLIC, params_commitment=0, metadata_cid=metadata_cid)


def attested_fields(manifest: AttestedManifest, model_id: str) -> dict[str, Any]:
    """The registry fields an attested model's entry must have (compared by ``check_entry``)."""
    return {"vk_digest": system_digest().hex(), "onnx_sha256": manifest.weights.root.removeprefix("0x"),
            "settings_hash": digest_of(model_id).hex(), "input_instances": INPUT_INSTANCES,
            "instance_count": INSTANCE_COUNT, "proof_mode": int(ProofMode.PUBLIC)}


def instance_count(manifest: ModelManifest) -> int:
    """All public instances of a proof: the market refuses a proof with any other number."""
    layout = manifest.layout
    return layout.input + layout.params + layout.output


def check_registrable(manifest: ModelManifest) -> None:
    """Refuse, before anything is deployed, a model whose instance layout the market cannot bind."""
    if manifest.layout.input < 1:
        raise UsageError("this model has no public input instance: the market cannot bind a request to it")
    hashed_params = manifest.privacy["params"] == "hashed"
    if hashed_params and manifest.layout.params != 1:
        raise UsageError(
            f"this model publishes {manifest.layout.params} params commitments; the market checks exactly one"
        )
    if not hashed_params and manifest.layout.params:
        raise UsageError(f"this model has {manifest.layout.params} unexpected params instances")


def params_commitment(manifest: ModelManifest, store: LocalStore) -> int:
    sizes = [_size(t.shape) for t in manifest.inputs]
    sizes[0] += manifest.salt_elements
    with tempfile.TemporaryDirectory(prefix="proofmarket-params-") as tmp:
        data = Path(tmp) / "input.json"
        data.write_text(json.dumps({"input_data": [[0.0] * n for n in sizes]}))
        witness = ezkl_calls.gen_witness(data, store.path(manifest.compiled.cid), Path(tmp) / "witness.json")
    hashes = (witness.get("processed_params") or {}).get("poseidon_hash") or []
    if len(hashes) != 1:
        raise UsageError(f"expected one params commitment in the witness, found {len(hashes)}")
    return felt_to_uint(hashes[0])


def _size(shape: list[int]) -> int:
    size = 1
    for dim in shape:
        size *= max(dim, 1)
    return size
