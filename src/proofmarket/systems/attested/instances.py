"""The attested system's instance rules: what an escrowed generate request commits to and what the node signs.

- Request: the consumer commits to its generate request ``{prompt, max_tokens, temperature, seed}``:
  ``requestHash = keccak256(canonical JSON)``, ``inputCommitment = keccak256(abi.encodePacked(requestHash))``.
  Sampling needs its seed in the commitment (a drawn seed could not be committed in advance).
- Fulfil or commit: instances ``[requestHash, weightsRoot, decodingHash, commitmentsHash, outputHash]`` (the last
  four from the attested bundle) and the node's EIP-191 signature over their packed hash as the "proof".

Escrow and the court pay on the node's signature: an attestation, not a proof. What the registry records about an
attested model is in ``proofmarket.onchain.spec``.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from proofmarket.core.canonical import canonical_forms
from proofmarket.core.errors import InputError
from proofmarket.systems.attested.documents import (
    ATTESTED_SYSTEM,
    AttestedBundle,
    commitments_hash,
    decoding_hash,
    legacy_decoding_hashes,
)
from proofmarket.systems.attested.service import GenerateRequest

INPUT_INSTANCES, INSTANCE_COUNT = 1, 5


def escrow_request(doc: Any) -> dict[str, Any]:
    """The generate request an escrow commits to, normalised: ``{prompt, max_tokens, temperature, seed}``."""
    if isinstance(doc, dict) and float(doc.get("temperature") or 0) > 0 and doc.get("seed") is None:
        raise InputError("an escrowed sampling request needs its seed: the commitment is made before the call")
    request = GenerateRequest.of(doc)
    return {"prompt": request.prompt, "max_tokens": request.max_tokens, "temperature": request.temperature,
            "seed": request.seed}


def request_hashes(doc: Any) -> list[int]:
    """The request's hash in each canonical form: RFC 8785 first, then (when its bytes differ, e.g. a temperature
    of 0.0) the legacy form requests were committed in before it (``core/canonical.py``: one more release)."""
    return [int.from_bytes(keccak(form), "big") for form in canonical_forms(escrow_request(doc))]


def request_hash(doc: Any, form: int = 0) -> int:
    hashes = request_hashes(doc)
    return hashes[min(form, len(hashes) - 1)]


def input_commitment(doc: Any, form: int = 0) -> str:
    return "0x" + keccak(request_hash(doc, form).to_bytes(32, "big")).hex()


def opening(doc: Any, commitment: str) -> tuple[str, int]:
    """The commitment ``doc`` makes in the form that opens ``commitment`` (RFC 8785's first), and that form's index
    (kept with the input: the fulfilment's instances must hash the request the same way)."""
    for form, value in enumerate(request_hashes(doc)):
        made = "0x" + keccak(value.to_bytes(32, "big")).hex()
        if made.lower() == commitment.lower():
            return made, form
    return input_commitment(doc), 0


def system_digest() -> bytes:
    """The registry's ``vkDigest`` of every attested model: keccak256 of the system id."""
    return keccak(ATTESTED_SYSTEM.encode())


def instances_of(bundle: AttestedBundle, doc: Any, form: int = 0) -> list[int]:
    """The fulfilment's public instances: the request it answers (hashed in ``form``, the one its commitment was
    opened in) and the bundle's signed hashes."""
    return [request_hash(doc, form), int(bundle.model.weights_root, 16), int(decoding_hash(bundle.decoding), 16),
            int(commitments_hash(bundle.proof.commitments), 16), int(bundle.output.hash, 16)]


def instance_candidates(bundle: AttestedBundle, doc: Any) -> list[list[int]]:
    """Every instance list an honest node may have committed for this bundle: the request and the decoding hashed
    in RFC 8785's form or (before it) the legacy one. A judge takes any of them: none is a cheat."""
    decodings = [int(decoding_hash(bundle.decoding), 16), *(int(h, 16) for h in legacy_decoding_hashes(bundle))]
    rest = [int(commitments_hash(bundle.proof.commitments), 16), int(bundle.output.hash, 16)]
    return [[r, int(bundle.model.weights_root, 16), d, *rest] for r in request_hashes(doc) for d in decodings]


def _signed_hash(instances: list[int]) -> bytes:
    return keccak(b"".join(v.to_bytes(32, "big") for v in instances))


def sign_instances(account: LocalAccount, instances: list[int]) -> bytes:
    return bytes(account.sign_message(encode_defunct(primitive=_signed_hash(instances))).signature)


def signer_of(instances: list[int], signature: bytes) -> str:
    return str(Account.recover_message(encode_defunct(primitive=_signed_hash(instances)), signature=signature))
