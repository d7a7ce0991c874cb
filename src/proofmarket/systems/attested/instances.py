"""The attested system's instance rules: what an escrowed generate request commits to and what the node signs.

- Request: the consumer commits to its generate request ``{prompt, max_tokens, temperature, seed}``:
  ``requestHash = keccak256(canonical JSON)``, ``inputCommitment = keccak256(abi.encodePacked(requestHash))``.
  Sampling needs its seed in the commitment (a drawn seed could not be committed in advance).
- Fulfil or commit: instances ``[requestHash, weightsRoot, decodingHash, commitmentsHash, outputHash]`` (the last
  four from the attested bundle) and the node's EIP-191 signature over their packed hash as the "proof".

Escrow and the court pay on the node's signature: an attestation, not a proof. What the registry records about an
attested model is in ``proofmarket.market.spec``.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from proofmarket.core.errors import InputError
from proofmarket.store import canonical_json
from proofmarket.systems.attested.documents import ATTESTED_SYSTEM, AttestedBundle, commitments_hash, decoding_hash
from proofmarket.systems.attested.service import GenerateRequest

INPUT_INSTANCES, INSTANCE_COUNT = 1, 5


def escrow_request(doc: Any) -> dict[str, Any]:
    """The generate request an escrow commits to, normalised: ``{prompt, max_tokens, temperature, seed}``."""
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
    """The registry's ``vkDigest`` of every attested model: keccak256 of the system id."""
    return keccak(ATTESTED_SYSTEM.encode())


def instances_of(bundle: AttestedBundle, doc: Any) -> list[int]:
    """The fulfilment's public instances: the request it answers and the bundle's signed hashes."""
    return [request_hash(doc), int(bundle.model.weights_root, 16), int(decoding_hash(bundle.decoding), 16),
            int(commitments_hash(bundle.proof.commitments), 16), int(bundle.output.hash, 16)]


def _signed_hash(instances: list[int]) -> bytes:
    return keccak(b"".join(v.to_bytes(32, "big") for v in instances))


def sign_instances(account: LocalAccount, instances: list[int]) -> bytes:
    return bytes(account.sign_message(encode_defunct(primitive=_signed_hash(instances))).signature)


def signer_of(instances: list[int], signature: bytes) -> str:
    return str(Account.recover_message(encode_defunct(primitive=_signed_hash(instances)), signature=signature))
