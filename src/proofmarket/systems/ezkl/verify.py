"""Independent verification of a proof bundle against the public artifacts it names by CID."""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proofmarket.core.errors import ArtifactNotFound, BundleError, VerificationFailed, WrongMode
from proofmarket.store import ArtifactStore
from proofmarket.store.cid import digest_of
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.batching import slot_of
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.felts import felt_to_uint, keccak_packed, parse_uint_hex, uint_to_felt
from proofmarket.systems.ezkl.manifest import BatchCircuit, ModelManifest
from proofmarket.systems.ezkl.srs import srs_kind
from proofmarket.systems.port import VerifyReport

VERIFY_PROOF_SELECTOR = "1e8e1e13"  # verifyProof(bytes,uint256[])


def load_manifest(store: ArtifactStore, model_id: str) -> ModelManifest:
    """The proven (EZKL) manifest of ``model_id``; ``WrongMode`` when the model is attested."""
    doc = store.get_json(model_id)
    if isinstance(doc, dict) and doc.get("mode") == "attested":
        raise WrongMode(f"model {model_id} is sold in attested mode (no ZK proof): use generate, not infer or prove",
                        model_id=model_id, mode="attested")
    return ModelManifest.model_validate(doc)


def verify_bundle(doc: dict[str, Any] | ProofBundle, store: ArtifactStore) -> VerifyReport:
    """Raise VerificationFailed (one sentence why) unless every check holds; ArtifactNotFound when an
    artifact the bundle names is not in ``store``."""
    bundle = doc if isinstance(doc, ProofBundle) else ProofBundle.parse(doc)
    checks: list[str] = []
    manifest = _check_model(bundle, store)
    checks.append("bundle names the model's settings, vk and SRS")
    instances = [parse_uint_hex(i) for i in bundle.proof.instances]
    _check_instances(bundle, instances, manifest, store)
    checks.append("input commitment, output hash and output values match the public instances")
    _check_calldata(bundle, instances)
    checks.append("EVM calldata encodes this proof")
    _run_ezkl_verify(bundle, instances, store)
    checks.append("halo2/KZG proof verifies")
    if bundle.receipt is not None:
        from proofmarket.systems.receipts import check_receipt  # eth_account loads for a bundle with a receipt

        checks.append(check_receipt(bundle))
    # the SRS kind comes from the file's hash (its CID), never from the bundle's or the manifest's label
    return VerifyReport(True, bundle.model.id, bundle.output.values, srs_kind(digest_of(bundle.model.srs.cid).hex()),
                        checks)


def _check_model(bundle: ProofBundle, store: ArtifactStore) -> ModelManifest:
    model = bundle.model
    try:
        manifest = load_manifest(store, model.id)
    except ArtifactNotFound:
        raise
    except Exception as exc:
        raise BundleError(f"the model id {model.id} does not name a model manifest") from exc
    circuit: ModelManifest | BatchCircuit = manifest
    if bundle.batch is not None:
        batch = manifest.batch(bundle.batch.size)
        if batch is None:
            raise VerificationFailed(f"model {model.id} has no batch circuit of {bundle.batch.size} calls")
        circuit = batch
    pairs = [
        ("settings", model.settings_cid, circuit.settings.cid),
        ("verifying key", model.vk_cid, circuit.vk.cid),
        ("SRS", model.srs.cid, circuit.srs.cid),
        ("ONNX commitment", model.onnx_sha256, manifest.onnx.sha256),
    ]
    for what, claimed, actual in pairs:
        if claimed != actual:
            raise VerificationFailed(f"the bundle's {what} is not the one of model {model.id}")
    if hashlib.sha256(store.get(model.vk_cid)).hexdigest() != model.vk_digest:
        raise VerificationFailed("the verifying key does not match the bundle's vk digest")
    if bundle.layout != circuit.layout:
        raise VerificationFailed("the bundle's instance layout differs from the model's")
    if bundle.privacy != manifest.privacy or bundle.input.visibility != manifest.privacy.get("input"):
        raise VerificationFailed("the bundle's privacy profile differs from the model's")
    return manifest


@dataclass(frozen=True)
class OwnInstances:
    """This call's instances in the proof: all of them, or its slot's in a batched proof."""

    inputs: list[int]
    outputs: list[int]
    output_scales: list[int]
    input_scales: slice


def own_instances(bundle: ProofBundle, instances: list[int]) -> OwnInstances:
    layout = bundle.layout
    if bundle.batch is None:
        return OwnInstances(instances[: layout.input], instances[len(instances) - layout.output:], layout.output_scales,
                    slice(None))
    try:
        slot = slot_of(layout, bundle.batch.size, bundle.batch.slot)
    except ValueError as exc:
        raise VerificationFailed(f"the bundle's batch slot does not fit its layout ({exc})") from exc
    n_inputs = len(bundle.input.values) if bundle.input.values is not None else 0
    return OwnInstances(instances[slot.input], instances[slot.output], slot.output_scales,
                slice(bundle.batch.slot * n_inputs, (bundle.batch.slot + 1) * n_inputs))


def _check_instances(bundle: ProofBundle, instances: list[int], manifest: ModelManifest,
                     store: ArtifactStore) -> None:
    layout = bundle.layout
    if len(instances) != layout.input + layout.params + layout.output:
        raise VerificationFailed(
            f"the proof has {len(instances)} public instances; the model's layout needs "
            f"{layout.input + layout.params + layout.output}"
        )
    own = own_instances(bundle, instances)
    if keccak_packed(own.inputs) != bundle.input.commitment:
        raise VerificationFailed("the input commitment does not match the proof's public input")
    if keccak_packed(own.outputs) != bundle.output.hash:
        raise VerificationFailed("the output hash does not match the proof's public output")
    _check_output_values(bundle, own)
    if bundle.input.visibility == "public":
        _check_input_values(bundle, own, store)


def _decode(values: list[int], scales: list[int], sizes: list[int]) -> list[list[float]]:
    out, pos = [], 0
    for scale, size in zip(scales, sizes, strict=True):
        out.append([ezkl_calls.felt_to_float(uint_to_felt(v), scale) for v in values[pos:pos + size]])
        pos += size
    return out


def _sizes(shapes: list[list[int]]) -> list[int]:
    return [math.prod(shape) for shape in shapes]


def decode_outputs(bundle: ProofBundle, outputs: list[int], scales: list[int] | None = None) -> list[list[float]]:
    """The output values the proof's output instances commit to, one flat list per model output (``scales``: the
    outputs' scales, the layout's when None)."""
    sizes = _sizes(bundle.output.shapes)
    scales = bundle.layout.output_scales if scales is None else scales
    if sum(sizes) != len(outputs) or len(scales) != len(sizes):
        raise VerificationFailed("the output shapes do not match the proof's public output")
    return _decode(outputs, scales, sizes)


def _check_output_values(bundle: ProofBundle, own: OwnInstances) -> None:
    if bundle.privacy.get("output") == "committed":  # a slice's: a commitment in its proof, no values shown
        if bundle.output.values or own.outputs:
            raise VerificationFailed("a committed output carries no values and no output instances")
        return
    decoded = decode_outputs(bundle, own.outputs, own.output_scales)
    if not _close(decoded, bundle.output.values, 1e-9):
        raise VerificationFailed("the output values are not the ones the proof commits to")


def _check_input_values(bundle: ProofBundle, own: OwnInstances, store: ArtifactStore) -> None:
    values = bundle.input.values
    if values is None:
        raise VerificationFailed("a public-input bundle must carry its input values")
    # the proof's settings (checked against the model's above): a batch circuit lists every slot's scales
    scales = json.loads(store.get(bundle.model.settings_cid))["model_input_scales"][own.input_scales]
    if len(scales) != len(values):
        raise VerificationFailed("the input values do not match the proof's public input")
    decoded = _decode(own.inputs, scales, [len(v) for v in values])
    tolerance = max(2.0 ** -min(scales), 1e-9)
    if not _close(decoded, values, tolerance):
        raise VerificationFailed("the input values are not the ones the proof commits to")


def _close(a: list[list[float]], b: list[list[float]], tol: float) -> bool:
    if [len(x) for x in a] != [len(x) for x in b]:
        return False
    return all(abs(x - y) <= tol for xs, ys in zip(a, b, strict=True) for x, y in zip(xs, ys, strict=True))


def _check_calldata(bundle: ProofBundle, instances: list[int]) -> None:
    """The calldata must call ``verifyProof(proof, instances)`` with the bundle's own proof and instances (read here as
    the ABI lays them out: an ABI library's import costs 0.18 s of every command that checks a bundle)."""
    try:
        calldata = bytes.fromhex(bundle.proof.evm_calldata.removeprefix("0x"))
        proof = bytes.fromhex(bundle.proof.hex.removeprefix("0x"))
    except ValueError as exc:
        raise VerificationFailed("the EVM calldata or the proof is not valid hex") from exc
    if calldata[:4].hex() != VERIFY_PROOF_SELECTOR:
        raise VerificationFailed("the EVM calldata does not call verifyProof(bytes,uint256[])")
    try:
        encoded_proof, encoded_instances = verify_call_args(calldata[4:])
    except ValueError as exc:
        raise VerificationFailed(f"the EVM calldata is not a valid verifyProof call ({exc})") from exc
    if encoded_proof != proof or encoded_instances != instances:
        raise VerificationFailed("the EVM calldata does not encode the bundle's proof and instances")


def verify_call_args(data: bytes) -> tuple[bytes, list[int]]:
    """``(bytes proof, uint256[] instances)`` from their ABI encoding: two offsets to the proof (its length, then its
    bytes) and the instances (their count, then one 32-byte word each); ``ValueError`` when one points outside."""
    def word(at: int) -> int:
        if at < 0 or at + 32 > len(data):
            raise ValueError(f"a word at {at} is outside the {len(data)} bytes")
        return int.from_bytes(data[at:at + 32], "big")

    proof_at, instances_at = word(0), word(32)
    size = word(proof_at)
    if proof_at + 32 + size > len(data):
        raise ValueError("the proof runs past the end")
    count = word(instances_at)
    if count > len(data) // 32:
        raise ValueError("more instances than the data holds")
    return data[proof_at + 32:proof_at + 32 + size], [word(instances_at + 32 * (i + 1)) for i in range(count)]


def _run_ezkl_verify(bundle: ProofBundle, instances: list[int], store: ArtifactStore) -> None:
    try:
        proof_bytes = list(bytes.fromhex(bundle.proof.hex.removeprefix("0x")))
    except ValueError as exc:
        raise VerificationFailed("the proof is not valid hex") from exc
    doc = {"instances": [[uint_to_felt(v) for v in instances]], "proof": proof_bytes}
    with tempfile.TemporaryDirectory(prefix="proofmarket-verify-") as tmp:
        proof_path = Path(tmp) / "proof.json"
        proof_path.write_text(json.dumps(doc))
        ezkl_calls.verify(proof_path, store.path(bundle.model.settings_cid), store.path(bundle.model.vk_cid),
                          store.path(bundle.model.srs.cid))


__all__ = ["verify_bundle", "load_manifest", "felt_to_uint", "decode_outputs",
           "own_instances"]
