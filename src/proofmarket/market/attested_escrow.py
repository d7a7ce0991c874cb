"""Escrow for attested text generation: what the registry records, what a request commits to, and what the
node sends to ``fulfill``.

- Registry entry: ``onnxSha256`` = the weights' Merkle root, ``vkDigest`` = keccak256 of the system id,
  ``settingsHash`` = sha256 of the manifest (its CID's digest), one input instance, five instances, verifier
  = an ``AttestationVerifier(attester, weightsRoot)`` (the node the owner names signs fulfilments).
- Request: the consumer commits to its generate request ``{prompt, max_tokens, temperature, seed}``:
  ``requestHash = keccak256(canonical JSON)``, ``inputCommitment = keccak256(abi.encodePacked(requestHash))``.
  Sampling needs its seed in the commitment (a drawn seed could not be committed in advance).
- Fulfil: instances ``[requestHash, weightsRoot, decodingHash, commitmentsHash, outputHash]`` (the last four
  from the attested bundle) and the node's EIP-191 signature over their packed hash as the "proof".

The escrow price is the registry's price per request (the request may generate up to its ``max_tokens``,
at most the model's cap). Escrow pays on the node's signature: an attestation, not a proof.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from proofmarket.chain.types import ModelSpec, ProofMode
from proofmarket.core.errors import InputError, UsageError
from proofmarket.store import canonical_json
from proofmarket.store.cid import digest_of
from proofmarket.systems.attested.documents import ATTESTED_SYSTEM, AttestedBundle, AttestedManifest

INPUT_INSTANCES, INSTANCE_COUNT = 1, 5
VERIFIER = "AttestationVerifier"


def escrow_request(doc: Any) -> dict[str, Any]:
    """The generate request an escrow commits to, normalised: ``{prompt, max_tokens, temperature, seed}``."""
    from proofmarket.systems.attested.service import GenerateRequest

    if isinstance(doc, dict) and float(doc.get("temperature") or 0) > 0 and doc.get("seed") is None:
        raise InputError("an escrowed sampling request needs its seed: the commitment is made before the call")
    request = GenerateRequest.of(doc)
    return {"prompt": request.prompt, "max_tokens": request.max_tokens, "temperature": request.temperature,
            "seed": request.seed}


def request_hash(doc: Any) -> int:
    return int.from_bytes(keccak(canonical_json(escrow_request(doc))), "big")


def input_commitment(doc: Any) -> str:
    return "0x" + keccak(request_hash(doc).to_bytes(32, "big")).hex()


def system_digest() -> bytes:
    return keccak(ATTESTED_SYSTEM.encode())


def attested_spec(manifest: AttestedManifest, model_id: str, *, verifier: str, price: int, owner_share_bps: int,
                  metadata_cid: str) -> ModelSpec:
    if manifest.kind != "causal-lm":
        raise UsageError("escrow for attested models takes causal LMs (attested ONNX models are sold over x402)")
    return ModelSpec(onnx_sha256=bytes.fromhex(manifest.weights.root.removeprefix("0x")), vk_digest=system_digest(),
                     settings_hash=digest_of(model_id), verifier=verifier, price=price,
                     owner_share_bps=owner_share_bps, input_instances=INPUT_INSTANCES, instance_count=INSTANCE_COUNT,
                     proof_mode=ProofMode.PUBLIC, params_commitment=0, metadata_cid=metadata_cid)


def expected_fields(manifest: AttestedManifest, model_id: str) -> dict[str, Any]:
    """The registry fields an attested model's entry must have (compared by ``check_entry``)."""
    return {"vk_digest": system_digest().hex(), "onnx_sha256": manifest.weights.root.removeprefix("0x"),
            "settings_hash": digest_of(model_id).hex(), "input_instances": INPUT_INSTANCES,
            "instance_count": INSTANCE_COUNT, "proof_mode": int(ProofMode.PUBLIC)}


def instances_of(bundle: AttestedBundle, doc: Any) -> list[int]:
    """The fulfilment's public instances: the request it answers and the bundle's signed hashes."""
    from proofmarket.systems.attested.documents import commitments_hash, decoding_hash

    return [request_hash(doc), int(bundle.model.weights_root, 16), int(decoding_hash(bundle.decoding), 16),
            int(commitments_hash(bundle.proof.commitments), 16), int(bundle.output.hash, 16)]


def sign_instances(account: LocalAccount, instances: list[int]) -> bytes:
    packed = b"".join(v.to_bytes(32, "big") for v in instances)
    return bytes(account.sign_message(encode_defunct(primitive=keccak(packed))).signature)


def signer_of(instances: list[int], signature: bytes) -> str:
    packed = b"".join(v.to_bytes(32, "big") for v in instances)
    return str(Account.recover_message(encode_defunct(primitive=keccak(packed)), signature=signature))
