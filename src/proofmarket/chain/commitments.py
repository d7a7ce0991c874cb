"""How proofmarket values map to the bytes32 the contracts compare.

- model key: ``keccak256(utf8(model id))``, the model id being the manifest CID string.
- on-chain model id: ``keccak256(abi.encode(owner, model key))`` (ModelRegistry.modelIdOf): ids are
  namespaced by their owner, so another account registering the same CID gets another id.
- instances hash: ``keccak256(abi.encodePacked(uint256[]))``, i.e. keccak of the instances as 32-byte
  big-endian words. The input commitment of a request is the instances hash of the proof's leading
  ``inputInstances`` instances (raw felts for a public input, the Poseidon hash(es) for a hashed
  input); the output hash is the instances hash of the output instances.
- authorization nonce: ``keccak256(abi.encode(modelKey, inputCommitment, uint64 deadline, salt))``,
  the EIP-3009 nonce that binds a consumer's payment signature to one request.
- proven nonce (x402 ``proven``): ``keccak256(abi.encode(PROVEN_CALL_TYPEHASH, modelId, inputCommitment,
  uint96 maxAmount, prover, salt))``: the signature moves money only into a settlement of that model, on that
  input, by that prover, of at most that much (``InferenceMarket.fulfillAuthorized``).
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi.abi import encode
from eth_utils.crypto import keccak

# BN254 scalar field: EZKL's public instances are elements of it.
FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617


def model_key(model_id: str) -> bytes:
    return keccak(text=model_id)


def model_id_of(owner: str, key: bytes) -> bytes:
    """ModelRegistry.modelIdOf(owner, key)."""
    return keccak(encode(["address", "bytes32"], [owner, key]))


def model_id_for(owner: str, model_cid: str) -> bytes:
    """The on-chain id of the model with this manifest CID, registered by ``owner``."""
    return model_id_of(owner, model_key(model_cid))


def instances_hash(instances: Sequence[int]) -> bytes:
    for value in instances:
        if not 0 <= value < FIELD_MODULUS:
            raise ValueError(f"instance {value} is not a BN254 field element")
    return keccak(b"".join(value.to_bytes(32, "big") for value in instances))


def input_commitment(input_instances: Sequence[int]) -> bytes:
    """The commitment a request stores: the instances hash of the input's public instances."""
    if not input_instances:
        raise ValueError("a request needs at least one public input instance")
    return instances_hash(input_instances)


def authorization_nonce(model: bytes, commitment: bytes, deadline: int, salt: bytes) -> bytes:
    return keccak(encode(["bytes32", "bytes32", "uint64", "bytes32"], [model, commitment, deadline, salt]))


PROVEN_CALL_TYPEHASH = keccak(
    text="ProvenCall(bytes32 modelId,bytes32 inputCommitment,uint96 maxAmount,address prover,bytes32 salt)")


def proven_nonce(model_id: bytes, commitment: bytes, max_amount: int, prover: str, salt: bytes) -> bytes:
    """The EIP-3009 nonce of an x402 ``proven`` authorization (``InferenceMarket.provenNonce``)."""
    return keccak(encode(["bytes32", "bytes32", "bytes32", "uint96", "address", "bytes32"],
                         [PROVEN_CALL_TYPEHASH, model_id, commitment, max_amount, prover, salt]))
