"""The model manifest: one JSON document, stored by CID, listing every artifact of a compiled model.

Its CID is the model id. Everything a verifier needs (settings, vk, SRS) is named in it by CID.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from proofmarket.systems.documents import MANIFEST_FORMAT, ArtifactRef, CompileTimeFree

if TYPE_CHECKING:
    from proofmarket.models import InputSignature
    from proofmarket.models.domain import InputDomain

MANIFEST_VERSION = 2  # v2 adds mode and system; v1 manifests (proven, EZKL) still load


class TensorDoc(BaseModel):
    name: str
    shape: list[int]
    dtype: str


class SrsRef(ArtifactRef):
    kind: str  # "dev" | "ceremony"
    logrows: int


class VerifierRef(BaseModel):
    source: ArtifactRef
    abi: ArtifactRef
    bytecode: ArtifactRef
    compiler: str
    deployed_size: int


class SharedVerifierRef(BaseModel):
    """EZKL's reusable verifier (the same contract for every circuit: listings share one deployed on the chain) and
    this model's verification-key artifact (VKA) for it; ``vka_digest`` = keccak256 of the VKA's words, what the
    listing's SharedVerifier clone pins (contracts/SharedVerifier.sol)."""

    model_config = ConfigDict(extra="forbid")

    source: ArtifactRef
    abi: ArtifactRef
    bytecode: ArtifactRef
    runtime_keccak: str  # keccak256 of its deployed code: how it is found on a chain (SharedVerifier.reusableOf)
    compiler: str
    deployed_size: int
    vka: ArtifactRef
    vka_digest: str


class InstanceLayout(BaseModel):
    """How the proof's public instances split: [input | params | output]."""

    input: int
    params: int
    output: int
    output_scales: list[int]


class BatchCircuit(BaseModel):
    """The model repeated ``size`` times in one circuit (``batching.py``): calls to the model proven together. Its
    ONNX is ``replicate(circuit_onnx, size)``; same scales as the model's own circuit, so the same outputs."""

    model_config = ConfigDict(extra="forbid")

    size: int
    circuit_onnx: ArtifactRef
    settings: ArtifactRef
    compiled: ArtifactRef
    vk: ArtifactRef
    pk: ArtifactRef
    srs: SrsRef
    layout: InstanceLayout  # the whole circuit's: ``size`` slots of the model's layout
    logrows: int
    verifier: VerifierRef | None = None  # its Solidity verifier (fulfillBatch), when it deploys and accepts on an EVM

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        doc: dict[str, Any] = handler(self)
        if self.verifier is None:  # batch circuits compiled before verifiers were rendered keep their id
            doc.pop("verifier", None)
        return doc


class ModelManifest(CompileTimeFree):
    model_config = ConfigDict(extra="forbid")

    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION
    mode: Literal["proven"] = "proven"
    system: Literal["ezkl-halo2-kzg-bn254"] = "ezkl-halo2-kzg-bn254"
    name: str
    onnx: ArtifactRef  # the owner's upload; its sha256 is the model commitment
    circuit_onnx: ArtifactRef  # the copy EZKL compiled (batch fixed, maybe salted)
    inputs: list[TensorDoc]
    outputs: list[TensorDoc]
    is_classifier: bool
    privacy: dict[str, str]
    salt_elements: int
    settings: ArtifactRef
    compiled: ArtifactRef
    vk: ArtifactRef  # vk.sha256 is the vk digest
    pk: ArtifactRef
    srs: SrsRef
    verifier: VerifierRef
    shared_verifier: SharedVerifierRef | None = None  # left out when None: manifests before it keep their id
    layout: InstanceLayout
    logrows: int
    tuning: dict[str, Any]
    accuracy: dict[str, Any]
    ezkl_version: str
    batches: list[BatchCircuit] = []  # compiled batch sizes, smallest first (left out of the document when none)
    # the inputs the circuit is calibrated for (models/domain.py); a call outside it is refused before payment. Left
    # out when None: manifests before it keep their id (and check no domain)
    input_domain: dict[str, Any] | None = None
    _left_out_when_empty: ClassVar[tuple[str, ...]] = ("created_at", "batches", "shared_verifier", "input_domain")

    def input_signature(self) -> InputSignature:
        """What a call's input is checked against, from the manifest (no ONNX file to load, nor onnx to import)."""
        from proofmarket.models import InputSignature, TensorSpec

        specs = tuple(TensorSpec(t.name, tuple(t.shape), t.dtype) for t in self.inputs)
        # a slice's committed input is the previous slice's output, not a caller's: nothing to refuse before payment
        # (a value beyond what it was calibrated for fails its witness, and the call, uncharged)
        return InputSignature(specs, None if self.privacy.get("input") == "committed" else self.domain())

    def domain(self) -> InputDomain | None:
        """The input domain the circuit is calibrated for (None for a manifest compiled before domains)."""
        if self.input_domain is None:
            return None
        from proofmarket.models.domain import InputDomain

        return InputDomain.from_json(self.input_domain, [math.prod(t.shape) for t in self.inputs])

    def batch(self, size: int) -> BatchCircuit | None:
        return next((b for b in self.batches if b.size == size), None)

    @property
    def weights_public(self) -> bool:
        """The weights are fixed in the circuit (``public``, ``private-input``): the ONNX, the circuit ONNX and
        the compiled circuit show them, and so may be published. Hashed weights (``private``) are never served."""
        return self.privacy.get("params") == "fixed"

    @property
    def public_cids(self) -> list[str]:
        """What anyone may fetch (served at /v1/artifacts, packed by ``export``), by privacy profile: settings,
        vk, SRS and verifier always; the ONNX, circuit ONNX and compiled circuit only when the weights are
        public. Never the proving key: it is large, and for fixed weights it carries them (admin only)."""
        refs = [self.settings, self.vk, self.srs, self.verifier.source, self.verifier.abi, self.verifier.bytecode]
        refs += [ref for b in self.batches for ref in (b.settings, b.vk, b.srs)]
        if self.shared_verifier is not None:
            shared = self.shared_verifier
            refs += [shared.source, shared.abi, shared.bytecode, shared.vka]
        refs += [ref for b in self.batches if b.verifier for ref in (b.verifier.source, b.verifier.abi,
                                                                     b.verifier.bytecode)]
        if self.weights_public:
            refs += [self.onnx, self.circuit_onnx, self.compiled]
            refs += [ref for b in self.batches for ref in (b.circuit_onnx, b.compiled)]
        return [r.cid for r in refs]
