"""The attested model manifest and the attested bundle, with the node's EIP-712 attestation.

An attested bundle is not a proof. It is the node's signed statement "I ran the model whose weights have this
Merkle root on these input tokens with this decoding configuration, and these were the output tokens and the
activation commitments (TOPLOC) of every chunk". Anyone holding the weights can re-execute it
(``proofmarket verify --reexecute``): one prefill pass reproduces every chunk's commitment and every token.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from pydantic import BaseModel, ConfigDict, Field

from proofmarket.core.canonical import canonical_forms
from proofmarket.core.eip712 import DOMAIN_FIELDS, fields
from proofmarket.core.errors import VerificationFailed
from proofmarket.store import canonical_json
from proofmarket.systems.documents import MANIFEST_FORMAT, ArtifactRef, CompileTimeFree, validate_bundle

if TYPE_CHECKING:  # eth_account loads when an attestation is signed or checked, not on import
    from eth_account.signers.local import LocalAccount

ATTESTED_SYSTEM: Literal["proofmarket-attested-toploc-v1"] = "proofmarket-attested-toploc-v1"
BUNDLE_FORMAT = "proofmarket/proof-bundle"
VERSION = 2
HEX = r"^0x[0-9a-fA-F]*$"
BYTES32 = r"^0x[0-9a-fA-F]{64}$"
ATTESTATION_TYPE = fields("modelId string, system string, weightsRoot bytes32, inputCommitment bytes32, "
                          "outputHash bytes32, decodingHash bytes32, commitmentsHash bytes32, issuedAt uint256")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- manifest -------------------------------------------------------------------------------------
class WeightsCommitment(_Strict):
    root: str = Field(pattern=BYTES32)  # merkle.merkle_root over the loaded tensors
    algorithm: str = "sha256-merkle-v1"
    tensors: int
    dtype: str
    leaves: dict[str, str] = {}  # tensor name -> its leaf hash (hex), in name order: the root's leaves


class GenerationTerms(_Strict):
    max_tokens_cap: int = Field(gt=0)  # the most one call may ask for (and pays for)
    chunk_tokens: int = Field(gt=0)  # tokens per activation commitment
    topk: int = Field(gt=0)  # committed activations per chunk
    tolerance: dict[str, float]  # toploc.Tolerance
    eos_token_id: int | None
    sampling: list[str] = ["greedy", "seeded"]


class TensorTerm(_Strict):
    name: str
    shape: list[int]
    dtype: str


class OnnxTerms(_Strict):
    """An attested ONNX model: its inputs, the intermediate tensors committed to (probes), and top-k."""

    inputs: list[TensorTerm]
    outputs: list[str]
    probes: list[str]  # intermediate tensors, evenly spaced along the graph; committed with the outputs
    topk: int = Field(gt=0)
    tolerance: dict[str, float]
    opset: int


def differing_tensors(committed: dict[str, str], actual: dict[str, str], limit: int = 3) -> str:
    """A short description of which tensors differ between two leaf maps (for a weights-root mismatch)."""
    names = sorted(set(committed) | set(actual))
    changed = [n for n in names if committed.get(n) != actual.get(n)]
    missing = [n for n in changed if n not in actual]
    extra = [n for n in changed if n not in committed]
    other = [n for n in changed if n in actual and n in committed]
    parts = []
    for label, group in (("changed", other), ("missing", missing), ("not in the model", extra)):
        if group:
            more = f" and {len(group) - limit} more" if len(group) > limit else ""
            parts.append(f"{label}: {', '.join(group[:limit])}{more}")
    return "; ".join(parts) or "no tensor differs (another order or algorithm)"


class AttestedManifest(_Strict, CompileTimeFree):
    format: str = MANIFEST_FORMAT
    version: int = VERSION
    mode: Literal["attested"] = "attested"
    system: Literal["proofmarket-attested-toploc-v1"] = ATTESTED_SYSTEM
    kind: Literal["causal-lm", "onnx"] = "causal-lm"
    name: str
    files: dict[str, ArtifactRef]  # the model directory (or the one ONNX file), file name -> stored copy
    weights: WeightsCommitment
    architecture: str
    context_length: int | None = None  # causal LMs
    vocab_size: int | None = None  # causal LMs
    generation: GenerationTerms | None = None  # causal LMs
    onnx: OnnxTerms | None = None  # ONNX models
    runtime: dict[str, str] = {}  # only in manifests written before: library versions are no part of the id
    privacy: dict[str, str] = {"name": "open-weights", "input": "public", "params": "public", "output": "public"}
    _left_out_when_empty: ClassVar[tuple[str, ...]] = ("created_at", "runtime")

    @property
    def public_cids(self) -> list[str]:
        """Open weights: a re-checker needs every file."""
        return [ref.cid for ref in self.files.values()]

    @property
    def weights_public(self) -> bool:
        return True


# --- bundle ---------------------------------------------------------------------------------------
class _WeightsModel(_Strict):
    """A bundle's model: its id and name, and the Merkle root of the weights it committed to."""

    id: str
    name: str
    weights_root: str = Field(pattern=BYTES32)


class AttestedModel(_WeightsModel):
    architecture: str


class AttestedInput(_Strict):
    visibility: str = "public"
    prompt: str | None
    tokens: list[int]
    commitment: str = Field(pattern=BYTES32)  # token_hash(tokens)


class AttestedOutput(_Strict):
    text: str
    tokens: list[int]
    hash: str = Field(pattern=BYTES32)  # token_hash(tokens)
    finish_reason: Literal["stop", "length"]


class AttestedDecoding(_Strict):
    strategy: Literal["greedy", "sample"]
    max_tokens: int = Field(gt=0)
    temperature: float = Field(ge=0)
    seed: int | None
    chunk_tokens: int = Field(gt=0)
    topk: int = Field(gt=0)


class Attestation(_Strict):
    signer: str
    signature: str = Field(pattern=HEX)
    typedData: dict[str, Any]  # noqa: N815 - the EIP-712 JSON name


class AttestedProof(_Strict):
    system: Literal["proofmarket-attested-toploc-v1"] = ATTESTED_SYSTEM
    commitments: list[str]  # 0x-hex, one per chunk (toploc.commit)
    commitments_hash: str = Field(pattern=BYTES32)
    attestation: Attestation


class _AttestedBundleBase(_Strict):
    """What both attested bundles (causal LM, ONNX) share: envelope, proof section, prover, payment."""

    format: str = BUNDLE_FORMAT
    version: int = VERSION
    mode: Literal["attested"] = "attested"
    privacy: dict[str, str]
    proof: AttestedProof
    prover: dict[str, Any]
    timings: dict[str, float]
    created_at: str
    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None

    @classmethod
    def parse(cls, doc: Any) -> Self:
        return validate_bundle(cls, doc, "attested bundle")

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class AttestedBundle(_AttestedBundleBase):
    model: AttestedModel
    input: AttestedInput
    output: AttestedOutput
    decoding: AttestedDecoding


class OnnxModelRef(_WeightsModel):
    onnx_sha256: str


class OnnxInput(_Strict):
    visibility: str = "public"
    values: list[list[float]]  # one flat list per model input
    commitment: str = Field(pattern=BYTES32)  # values_hash(values)


class OnnxOutput(_Strict):
    values: list[list[float]]
    shapes: list[list[int]]
    hash: str = Field(pattern=BYTES32)  # values_hash(values)


class OnnxProbes(_Strict):
    tensors: list[str]  # committed in this order: the probes, then the outputs
    topk: int


class AttestedOnnxBundle(_AttestedBundleBase):
    kind: Literal["onnx"] = "onnx"
    model: OnnxModelRef
    input: OnnxInput
    output: OnnxOutput
    probes: OnnxProbes


# --- hashes ---------------------------------------------------------------------------------------
def values_hash(values: list[list[float]]) -> str:
    """keccak256 of the values as big-endian float64, input after input (exact for what JSON carries)."""
    import struct

    raw = b"".join(len(row).to_bytes(4, "big") + struct.pack(f">{len(row)}d", *row) for row in values)
    return "0x" + keccak(raw).hex()


def probes_hash(probes: OnnxProbes) -> str:
    return "0x" + keccak(canonical_json(probes.model_dump(mode="json"))).hex()


def token_hash(tokens: list[int]) -> str:
    """keccak256 of the tokens as packed big-endian uint32 (a Solidity contract can recompute it)."""
    return "0x" + keccak(b"".join(int(t).to_bytes(4, "big") for t in tokens)).hex()


def decoding_hash(decoding: AttestedDecoding) -> str:
    return "0x" + keccak(canonical_json(decoding.model_dump(mode="json"))).hex()


def legacy_decoding_hashes(bundle: AttestedBundle | AttestedOnnxBundle) -> list[str]:
    """The decoding hash as bundles signed before RFC 8785 computed it (``core/canonical.py``: one more release)."""
    terms = bundle.probes if isinstance(bundle, AttestedOnnxBundle) else bundle.decoding
    return ["0x" + keccak(form).hex() for form in canonical_forms(terms.model_dump(mode="json"))[1:]]


def commitments_hash(commitments: list[str]) -> str:
    raw = b"".join(len(c).to_bytes(4, "big") + bytes.fromhex(c.removeprefix("0x")) for c in commitments)
    return "0x" + keccak(raw).hex()


# --- the attestation ------------------------------------------------------------------------------
def attestation_message(bundle_fields: dict[str, Any], issued_at: int) -> dict[str, Any]:
    return {"modelId": bundle_fields["model_id"], "system": ATTESTED_SYSTEM,
            "weightsRoot": bundle_fields["weights_root"], "inputCommitment": bundle_fields["input_commitment"],
            "outputHash": bundle_fields["output_hash"], "decodingHash": bundle_fields["decoding_hash"],
            "commitmentsHash": bundle_fields["commitments_hash"], "issuedAt": issued_at}


def _typed(message: dict[str, Any], chain_id: int) -> dict[str, Any]:
    return {"types": {"EIP712Domain": DOMAIN_FIELDS, "AttestedInference": ATTESTATION_TYPE},
            "primaryType": "AttestedInference",
            "domain": {"name": "proofmarket", "version": "1", "chainId": chain_id},
            "message": message}


def sign_attestation(account: LocalAccount, fields: dict[str, Any], chain_id: int) -> Attestation:
    typed = _typed(attestation_message(fields, int(time.time())), chain_id)
    from eth_account.messages import encode_typed_data

    signed = account.sign_message(encode_typed_data(full_message=typed))
    return Attestation(signer=account.address, signature="0x" + bytes(signed.signature).hex(), typedData=typed)


def bundle_fields(bundle: AttestedBundle | AttestedOnnxBundle) -> dict[str, str]:
    """What the attestation signs, recomputed from the bundle's own values."""
    if isinstance(bundle, AttestedOnnxBundle):
        return {"model_id": bundle.model.id, "weights_root": bundle.model.weights_root,
                "input_commitment": values_hash(bundle.input.values), "output_hash": values_hash(bundle.output.values),
                "decoding_hash": probes_hash(bundle.probes),
                "commitments_hash": commitments_hash(bundle.proof.commitments)}
    return {"model_id": bundle.model.id, "weights_root": bundle.model.weights_root,
            "input_commitment": token_hash(bundle.input.tokens), "output_hash": token_hash(bundle.output.tokens),
            "decoding_hash": decoding_hash(bundle.decoding),
            "commitments_hash": commitments_hash(bundle.proof.commitments)}


def check_attestation(bundle: AttestedBundle | AttestedOnnxBundle) -> str:
    """The signer, once the signature holds and it signs this bundle's model, input, output, decoding and
    commitments (each hash recomputed from the bundle's own values); ``VerificationFailed`` otherwise."""
    expected = bundle_fields(bundle)
    what = "values" if isinstance(bundle, AttestedOnnxBundle) else "tokens"
    if expected["input_commitment"] != bundle.input.commitment.lower():
        raise VerificationFailed(f"the input commitment is not the hash of the bundle's input {what}")
    if expected["output_hash"] != bundle.output.hash.lower():
        raise VerificationFailed(f"the output hash is not the hash of the bundle's output {what}")
    if expected["commitments_hash"] != bundle.proof.commitments_hash.lower():
        raise VerificationFailed("the commitments hash is not the hash of the bundle's activation commitments")
    att = bundle.proof.attestation
    typed = att.typedData
    try:
        message = dict(typed["message"])
        chain_id = int(typed["domain"]["chainId"])
        if str(message.get("decodingHash", "")).lower() in legacy_decoding_hashes(bundle):
            expected["decoding_hash"] = str(message["decodingHash"]).lower()  # signed before RFC 8785
        rebuilt = _typed(attestation_message(expected, int(message["issuedAt"])), chain_id)
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationFailed(f"the attestation is malformed: {exc}") from exc
    if typed != rebuilt:
        raise VerificationFailed("the attestation does not sign this bundle's model, input, output, decoding and "
                                 "commitments")
    try:
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        signer = Account.recover_message(encode_typed_data(full_message=rebuilt), signature=att.signature)
    except Exception as exc:  # eth-keys raises several types for a signature off the curve
        raise VerificationFailed(f"the attestation signature is invalid: {exc}") from exc
    if not is_address(signer) or signer.lower() != att.signer.lower():
        raise VerificationFailed(f"the attestation claims signer {att.signer} but {signer} signed it")
    return to_checksum_address(signer)
