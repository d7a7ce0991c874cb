"""The proof bundle: one self-describing JSON document, stored under the CID of its canonical form.

Verification needs only the bundle and the public artifacts it names by CID (the model manifest,
settings, vk, SRS). See ``verify_bundle``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from proofmarket.core.errors import BundleError
from proofmarket.systems.documents import BUNDLE_FORMAT, validate_bundle
from proofmarket.systems.ezkl.manifest import InstanceLayout

BUNDLE_VERSION = 2  # v2 adds ``mode`` ("proven"); v1 bundles (no mode) are still read and verified
READ_VERSIONS = (1, 2)
PROVEN_SYSTEM: Literal["ezkl-halo2-kzg-bn254"] = "ezkl-halo2-kzg-bn254"
HEX = r"^0x[0-9a-fA-F]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleSrs(_Strict):
    cid: str
    sha256: str
    kind: str
    logrows: int


class BundleModel(_Strict):
    id: str  # CID of the model manifest
    name: str
    onnx_sha256: str
    settings_cid: str
    vk_cid: str
    vk_digest: str  # sha256 of the verifying key
    srs: BundleSrs
    verifier_bytecode_cid: str | None  # the circuit's Solidity verifier; None: a batch circuit without one


class BundleBatch(_Strict):
    """A proof shared by ``size`` calls (``batching.py``): this call is slot ``slot``. The model's settings, vk and
    SRS above are then the batch circuit's, the layout the whole circuit's, and the input commitment, output hash
    and values this slot's own."""

    size: int = Field(ge=2)
    slot: int = Field(ge=0)


class BundleInput(_Strict):
    visibility: str  # "public" | "hashed" | "committed" (a slice's: the previous slice's output commitment, sliced.py)
    values: list[list[float]] | None = None  # public inputs: one flat list per model input
    commitment: str = Field(pattern=HEX)  # keccak256(abi.encodePacked(input instances))


class BundleOutput(_Strict):
    values: list[list[float]]  # one flat list per model output, rescaled to floats; empty: a slice's committed output
    shapes: list[list[int]]
    hash: str = Field(pattern=HEX)  # keccak256(abi.encodePacked(output instances))


class BundleProof(_Strict):
    system: Literal["ezkl-halo2-kzg-bn254"] = PROVEN_SYSTEM
    hex: str = Field(pattern=HEX)
    # uint256 as 0x-hex (big-endian), in the order the verifier contract takes them
    instances: list[Annotated[str, Field(pattern=HEX)]]
    evm_calldata: str = Field(pattern=HEX)  # verifyProof(bytes,uint256[]) calldata, ready for eth_call


class ProofBundle(_Strict):
    format: str = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION
    mode: Literal["proven"] | None = "proven"  # None only in v1 bundles (and then left out of the document)
    model: BundleModel
    privacy: dict[str, str]
    layout: InstanceLayout
    input: BundleInput
    output: BundleOutput
    proof: BundleProof
    prover: dict[str, Any]
    timings: dict[str, float]
    created_at: str
    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    batch: BundleBatch | None = None  # left out of the document when the proof is this call's alone

    @classmethod
    def parse(cls, doc: Any) -> ProofBundle:
        if not isinstance(doc, dict):
            raise BundleError("a proof bundle must be a JSON object")
        if doc.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a proof bundle: format is {doc.get('format')!r}, expected {BUNDLE_FORMAT!r}")
        if doc.get("version") not in READ_VERSIONS:
            raise BundleError(f"unsupported proof bundle version {doc.get('version')!r} (this reads 1 and 2)")
        if doc.get("version") == 1 and "mode" in doc:
            raise BundleError("malformed proof bundle: a version 1 bundle has no mode")
        if doc.get("version") == 1:
            doc = {**doc, "mode": None}
        return validate_bundle(cls, doc, "proof bundle")

    def to_doc(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        if self.mode is None:  # a v1 bundle: the document it was stored (and signed) as
            del doc["mode"]
        if self.batch is None:
            del doc["batch"]
        return doc
