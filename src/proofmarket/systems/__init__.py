"""Proof systems behind a model: one port (``port.ProofSystem``), two systems, dispatch by document.

Manifests and bundles (v2) carry ``mode`` (``proven`` | ``attested``) and their proof section's ``system``;
v1 documents (before attested mode) are proven EZKL ones and still load and verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proofmarket.core.errors import BundleError
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.bundle import BUNDLE_FORMAT, ProofBundle
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.port import Mode, ProofSystem

PROVEN_SYSTEM = "ezkl-halo2-kzg-bn254"
ATTESTED_SYSTEM = "proofmarket-attested-toploc-v1"
GUARANTEES: dict[str, str] = {
    "proven": "zero-knowledge proof (EZKL, Halo2/KZG): the output came from the committed model on the committed "
              "input; final once the proof verifies",
    "attested": "attestation, not a proof: the node signs commitments to the weights, input, output and "
                "activations; anyone with the weights can re-execute and check it; only as strong as those "
                "re-checks and the stake behind the node",
}

AnyManifest = Any  # ModelManifest | AttestedManifest (attested types import torch-free pydantic only)
AnyBundle = Any  # ProofBundle | AttestedBundle


def mode_of(doc: dict[str, Any] | Any) -> Mode:
    """``proven`` or ``attested`` for a manifest or bundle (document or parsed)."""
    mode = doc.get("mode") if isinstance(doc, dict) else getattr(doc, "mode", None)
    return "attested" if mode == "attested" else "proven"


def parse_manifest(doc: Any) -> AnyManifest:
    if mode_of(doc) == "attested":
        from proofmarket.systems.attested.documents import AttestedManifest

        return AttestedManifest.model_validate(doc)
    return ModelManifest.model_validate(doc)


def parse_bundle(doc: Any) -> AnyBundle:
    if not isinstance(doc, dict):
        raise BundleError("a proof bundle must be a JSON object")
    if doc.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a proof bundle: format is {doc.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    if mode_of(doc) == "attested":
        from proofmarket.systems.attested.documents import VERSION, AttestedBundle, AttestedOnnxBundle

        if doc.get("version") != VERSION:
            raise BundleError(f"unsupported attested bundle version {doc.get('version')!r} (this reads {VERSION})")
        return AttestedOnnxBundle.parse(doc) if doc.get("kind") == "onnx" else AttestedBundle.parse(doc)
    return ProofBundle.parse(doc)


def verify_bundle_any(doc: Any, store: ArtifactStore, *, reexecute: bool = False, model_dir: Path | None = None,
                      work_dir: Path | None = None, threads: int | None = None) -> Any:
    """Verify a bundle of either mode (``VerifyReport``). Proven: the ZK proof and everything around it.
    Attested: signature, hashes and bindings; with ``reexecute`` also one prefill pass against every commitment."""
    from proofmarket.systems.ezkl.verify import VerifyReport, _check_receipt, verify_bundle

    bundle = parse_bundle(doc) if isinstance(doc, dict) else doc
    if mode_of(bundle) == "proven":
        return verify_bundle(bundle, store)
    from proofmarket.systems.attested import service

    checks = service.check_bundle(bundle, store)
    if bundle.receipt is not None:
        checks.append(_check_receipt(bundle))
    if reexecute:
        result = service.reexecute(bundle, store, work_dir or Path(".proofmarket-recheck"), model_dir, threads)
        checks.append(f"re-executed: {result.summary()} (one prefill pass, {result.seconds * 1000:.0f} ms)")
    else:
        checks.append("nothing was re-executed: run verify --reexecute to check the commitments against the weights")
    text = getattr(bundle.output, "text", None)
    output = [] if text is not None else bundle.output.values
    return VerifyReport(True, bundle.model.id, output, "none", checks, mode="attested", reexecuted=reexecute,
                        text=text)


__all__ = ["GUARANTEES", "Mode", "ProofSystem", "mode_of", "parse_bundle", "parse_manifest", "verify_bundle_any",
           "PROVEN_SYSTEM", "ATTESTED_SYSTEM"]
