"""Check an attested bundle: its signature, hashes and bindings (``check_bundle``, nothing re-executed), and
its re-execution (``reexecute``: one prefill pass, or one ONNX run, against every commitment)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from proofmarket.core.errors import ArtifactNotFound, AttestationMismatch, ProofMarketError, VerificationFailed
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested import toploc
from proofmarket.systems.attested.documents import (
    AttestedBundle,
    AttestedManifest,
    AttestedOnnxBundle,
    check_attestation,
    differing_tensors,
)
from proofmarket.systems.attested.sampling import Decoding
from proofmarket.systems.attested.terms import DEFAULT_TOLERANCE, load_lm, materialise

log = logging.getLogger(__name__)


def _check_onnx_bundle(bundle: AttestedOnnxBundle, store: ArtifactStore | None) -> list[str]:
    signer = check_attestation(bundle)
    checks = [f"attestation signed by {signer} binds the model, weights root, input, output and "
              f"{len(bundle.proof.commitments)} tensor commitment(s)"]
    if bundle.prover.get("address") and str(bundle.prover["address"]).lower() != signer.lower():
        raise VerificationFailed(f"the bundle names prover {bundle.prover['address']} but {signer} signed it")
    if len(bundle.proof.commitments) != len(bundle.probes.tensors):
        raise VerificationFailed("the bundle has not one commitment per committed tensor")
    manifest = _manifest_in(store, bundle.model.id) if store is not None else None
    if manifest is not None:
        if manifest.onnx is None or manifest.weights.root != bundle.model.weights_root:
            raise VerificationFailed(f"the bundle's weights root is not the one of model {bundle.model.id}")
        if bundle.probes.tensors != [*manifest.onnx.probes, *manifest.onnx.outputs] or \
                bundle.probes.topk != manifest.onnx.topk:
            raise VerificationFailed("the bundle's committed tensors or top-k are not the model's")
        checks.append("the bundle names the model's weights root and committed tensors")
    return checks


def check_bundle(bundle: AttestedBundle | AttestedOnnxBundle, store: ArtifactStore | None) -> list[str]:
    """Signature, hashes and bindings (nothing re-executed). With the model's manifest in ``store``: the
    bundle names its weights root and decoding terms."""
    if isinstance(bundle, AttestedOnnxBundle):
        return _check_onnx_bundle(bundle, store)
    signer = check_attestation(bundle)
    checks = [f"attestation signed by {signer} binds the model, weights root, input, output, decoding and "
              f"{len(bundle.proof.commitments)} activation commitment(s)"]
    if bundle.prover.get("address") and str(bundle.prover["address"]).lower() != signer.lower():
        raise VerificationFailed(f"the bundle names prover {bundle.prover['address']} but {signer} signed it")
    expected_chunks = -(-len(bundle.output.tokens) // bundle.decoding.chunk_tokens)
    if len(bundle.proof.commitments) != expected_chunks:
        raise VerificationFailed(f"{len(bundle.output.tokens)} output tokens need {expected_chunks} commitment(s); "
                                 f"the bundle has {len(bundle.proof.commitments)}")
    if len(bundle.output.tokens) > bundle.decoding.max_tokens:
        raise VerificationFailed("the bundle has more output tokens than its max_tokens")
    if store is not None:
        manifest = _manifest_in(store, bundle.model.id)
        if manifest is not None:
            if manifest.weights.root != bundle.model.weights_root:
                raise VerificationFailed(f"the bundle's weights root is not the one of model {bundle.model.id}")
            terms, asked = manifest.generation, (bundle.decoding.chunk_tokens, bundle.decoding.topk)
            if terms is None or (terms.chunk_tokens, terms.topk) != asked:
                raise VerificationFailed("the bundle's chunk size or top-k is not the model's")
            checks.append("the bundle names the model's weights root and commitment terms")
    return checks


def _manifest_in(store: ArtifactStore, model_id: str) -> AttestedManifest | None:
    try:
        doc = store.get_json(model_id)
    except ArtifactNotFound:
        return None
    except Exception as exc:
        raise VerificationFailed(f"the model id {model_id} does not name a model manifest") from exc
    try:
        return AttestedManifest.model_validate(doc)
    except Exception as exc:
        raise VerificationFailed(f"the model id {model_id} does not name an attested model manifest") from exc


def _stored_model(store: ArtifactStore, manifest: AttestedManifest | None, model_id: str, work_dir: Path) -> Path:
    """The model's directory rebuilt from the files its manifest names in ``store``."""
    if manifest is None:
        raise ArtifactNotFound(f"the manifest of model {model_id} is not here: pass --model-dir or fetch "
                               "the model's artifacts first")
    return materialise(store, manifest, work_dir / "attested" / model_id)


@dataclass(frozen=True)
class OnnxRecheck:
    tensors: int
    seconds: float

    def summary(self) -> str:
        return f"reproduced: {self.tensors} committed tensor(s) agree"


def _reexecute_onnx(bundle: AttestedOnnxBundle, store: ArtifactStore, work_dir: Path,
                    model_path: Path | None, threads: int | None) -> OnnxRecheck:
    from proofmarket.systems.attested.onnx_attest import AttestedOnnx  # onnxruntime: for ONNX models only

    manifest = _manifest_in(store, bundle.model.id)
    if model_path is None:
        model_path = _stored_model(store, manifest, bundle.model.id, work_dir) / "model.onnx"
    elif model_path.is_dir():
        model_path = model_path / "model.onnx"
    probes = bundle.probes.tensors[:len(bundle.probes.tensors) - len(bundle.output.values)]
    model = AttestedOnnx(model_path, probes, threads)
    if model.weights_root != bundle.model.weights_root:
        raise AttestationMismatch(f"the weights in {model_path.name} are not the ones the bundle commits to")
    start = time.perf_counter()
    arrays = [np.asarray(v, dtype=spec.dtype).reshape(spec.shape)
              for v, spec in zip(bundle.input.values, model.info.inputs, strict=True)]
    tolerance = toploc.Tolerance.from_json(manifest.onnx.tolerance) if manifest and manifest.onnx else DEFAULT_TOLERANCE
    checks = model.recheck(arrays, [bytes.fromhex(c.removeprefix("0x")) for c in bundle.proof.commitments],
                           tolerance, bundle.probes.tensors)
    return OnnxRecheck(len(checks), time.perf_counter() - start)


def reexecute(bundle: AttestedBundle | AttestedOnnxBundle, store: ArtifactStore, work_dir: Path,
              model_dir: Path | None = None, threads: int | None = None) -> Any:
    """Re-run one prefill over prompt + output and check every chunk and token (``AttestationMismatch`` at the
    first difference). The weights come from ``model_dir`` (checked against the bundle's weights root) or from
    the files the manifest names in ``store``. An ONNX bundle: one run, every committed tensor checked.

    A causal LM is loaded once per process and shared by the threads that judge with it (``lm.load``); a failure
    that is no verdict (a half-built load, any fault nothing explains) drops it, and the check runs once more on a
    fresh load before the failure is raised."""
    if isinstance(bundle, AttestedOnnxBundle):
        return _reexecute_onnx(bundle, store, work_dir, model_dir, threads)
    lm = load_lm()
    manifest = _manifest_in(store, bundle.model.id)
    if model_dir is None:
        model_dir = _stored_model(store, manifest, bundle.model.id, work_dir)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        return _recheck_lm(bundle, manifest, lm.load(model_dir), model_dir)
    except ProofMarketError:
        raise  # a verdict on the bundle (or on what is held here), not a fault of the shared model
    except Exception:  # noqa: BLE001 (a half-built load, a fault nothing explains: never kept for the next check)
        log.warning("re-executing with model %s failed: loaded afresh and tried once more", bundle.model.id,
                    exc_info=True)
    lm.forget(model_dir)
    return _recheck_lm(bundle, manifest, lm.load(model_dir), model_dir)


def _recheck_lm(bundle: AttestedBundle, manifest: AttestedManifest | None, model: Any, model_dir: Path) -> Any:
    root = model.weights_root()
    if root != bundle.model.weights_root:
        which = differing_tensors(manifest.weights.leaves, model.weight_leaves()) \
            if manifest is not None and manifest.weights.leaves else f"root {root[:18]}..."
        raise AttestationMismatch(f"the weights in {model_dir.name} are not the ones the bundle commits to ({which})")
    terms = manifest.generation if manifest is not None else None
    tolerance = toploc.Tolerance.from_json(terms.tolerance) if terms is not None else DEFAULT_TOLERANCE
    decoding = Decoding(bundle.decoding.max_tokens, bundle.decoding.temperature, bundle.decoding.seed)
    if bundle.input.prompt is not None and model.encode(bundle.input.prompt) != bundle.input.tokens:
        raise AttestationMismatch("the prompt's text does not tokenise to the bundle's input tokens")
    if model.decode(bundle.output.tokens) != bundle.output.text:
        raise AttestationMismatch("the output text is not the decoding of the bundle's output tokens")
    commitments = [bytes.fromhex(c.removeprefix("0x")) for c in bundle.proof.commitments]
    result = model.recheck(bundle.input.tokens, bundle.output.tokens, commitments, decoding,
                           chunk=bundle.decoding.chunk_tokens, tolerance=tolerance)
    if not result.reproduced:
        raise AttestationMismatch(result.summary(), chunk=result.first_bad_chunk, token=result.first_bad_token)
    return result
