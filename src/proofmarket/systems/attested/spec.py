"""The attested system's spec (mode ``attested``, system ``proofmarket-attested-toploc-v1``): documents only.

Its manifests and bundles parse with pydantic alone (no torch); ``verify`` checks the signature, hashes and
bindings, and with ``reexecute`` also runs one prefill pass (or the ONNX model) against every commitment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proofmarket.core.errors import BundleError
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested.documents import VERSION, AttestedBundle, AttestedManifest, AttestedOnnxBundle
from proofmarket.systems.ezkl.verify import VerifyReport, check_receipt
from proofmarket.systems.port import SystemContext, SystemSpec
from proofmarket.systems.registry import ATTESTED_SYSTEM

GUARANTEE = ("attestation, not a proof: the node signs commitments to the weights, input, output and activations; "
             "anyone with the weights can re-execute and check it; only as strong as those re-checks and the stake "
             "behind the node")


def parse_bundle(doc: dict[str, Any]) -> AttestedBundle | AttestedOnnxBundle:
    if doc.get("version") != VERSION:
        raise BundleError(f"unsupported attested bundle version {doc.get('version')!r} (this reads {VERSION})")
    return AttestedOnnxBundle.parse(doc) if doc.get("kind") == "onnx" else AttestedBundle.parse(doc)


def verify(bundle: Any, store: ArtifactStore, *, reexecute: bool = False,
           model_dir: Path | None = None, work_dir: Path | None = None, threads: int | None = None) -> VerifyReport:
    from proofmarket.systems.attested import service

    checks = service.check_bundle(bundle, store)
    if bundle.receipt is not None:
        checks.append(check_receipt(bundle))
    if reexecute:
        result = service.reexecute(bundle, store, work_dir or Path(".proofmarket-recheck"), model_dir, threads)
        checks.append(f"re-executed: {result.summary()} (one prefill pass, {result.seconds * 1000:.0f} ms)")
    else:
        checks.append("nothing was re-executed: run verify --reexecute to check the commitments against the weights")
    text = getattr(bundle.output, "text", None)
    output = [] if text is not None else bundle.output.values
    return VerifyReport(True, bundle.model.id, output, "none", checks, mode="attested", reexecuted=reexecute,
                        text=text)


def build(context: SystemContext) -> Any:
    from proofmarket.systems.attested.system import AttestedSystem

    if context.signer is None or context.chain_id is None:
        raise BundleError("the attested system signs its bundles: the node gives it a signer and a chain id")
    return AttestedSystem(context.store, context.work_dir, context.signer, context.chain_id)


def route(manifest: AttestedManifest) -> str:
    """A causal LM generates; an attested ONNX model answers on infer."""
    return "infer" if manifest.kind == "onnx" else "generate"


def public_fields(m: AttestedManifest) -> dict[str, Any]:
    """An attested model's public document: its inputs (ONNX) and its terms (weights root, probes or generation)."""
    files = {name: ref.cid for name, ref in m.files.items()}
    terms: dict[str, Any] = {"kind": m.kind, "architecture": m.architecture, "weights_root": m.weights.root,
                             "weights_dtype": m.weights.dtype, "runtime": m.runtime, "files": files}
    if m.onnx is not None:
        terms.update(probes=m.onnx.probes, topk=m.onnx.topk, price_unit="per call")
    elif m.generation is not None:
        g = m.generation
        terms.update(context_length=m.context_length, max_tokens_cap=g.max_tokens_cap, chunk_tokens=g.chunk_tokens,
                     topk=g.topk, price_unit="per 1,000 output tokens; a call is charged for its max_tokens (exact "
                                             "scheme)")
    return {"privacy_profile": {"input": "public", "params": "public", "output": "public", **m.privacy},
            "inputs": [t.model_dump() for t in m.onnx.inputs] if m.onnx else [], "attested": terms}


ATTESTED_SPEC = SystemSpec(system=ATTESTED_SYSTEM, mode="attested", guarantee=GUARANTEE,
                           parse_manifest=AttestedManifest.model_validate, parse_bundle=parse_bundle, verify=verify,
                           build=build, listed_on_registry=False, generates=True, route=route,
                           public_fields=public_fields,
                           warning="attested: an attestation, not a proof; nothing was re-executed")
