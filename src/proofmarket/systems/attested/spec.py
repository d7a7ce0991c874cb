"""The attested system's spec (mode ``attested``, system ``proofmarket-attested-toploc-v1``): documents only.

Its manifests and bundles parse with pydantic alone (no torch); ``verify`` checks the signature, hashes and
bindings, and with ``reexecute`` also runs one prefill pass (or the ONNX model) against every commitment.
"""

from __future__ import annotations

from typing import Any

from proofmarket.core.errors import BundleError, UsageError
from proofmarket.systems.attested.documents import AttestedManifest
from proofmarket.systems.attested.verify import GUARANTEE, parse_bundle, verify
from proofmarket.systems.ids import ATTESTED_SYSTEM
from proofmarket.systems.port import CompileRequest, SystemContext, SystemSpec


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
                     topk=g.topk, price_unit="per 1,000 output tokens: the tokens generated are charged with x402 "
                                             "upto, channels and credits; max_tokens with x402 exact")
    return {"privacy_profile": {"input": "public", "params": "public", "output": "public", **m.privacy},
            "inputs": [t.model_dump() for t in m.onnx.inputs] if m.onnx else [], "attested": terms}


def compile_hook(request: CompileRequest) -> str:
    """A causal LM directory (or an ONNX file) committed to (``compile.compile_attested``); ``options`` are its
    keywords (``max_tokens_cap``, ``chunk``, ``topk``)."""
    from proofmarket.systems.attested.compile import compile_attested

    unknown = sorted(set(request.options) - {"max_tokens_cap", "chunk", "topk"})
    if unknown:
        raise UsageError(f"unknown attested compile option(s): {', '.join(unknown)}")
    return compile_attested(request.source, request.store, name=request.name, progress=request.progress,
                            **request.options)[0]


ATTESTED_SPEC = SystemSpec(system=ATTESTED_SYSTEM, mode="attested", guarantee=GUARANTEE,
                           parse_manifest=AttestedManifest.model_validate, parse_bundle=parse_bundle, verify=verify,
                           build=build, listed_on_registry=False, generates=True, route=route,
                           public_fields=public_fields, compile=compile_hook,
                           warning="attested: an attestation, not a proof; nothing was re-executed")
