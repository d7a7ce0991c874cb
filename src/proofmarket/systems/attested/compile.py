"""Compile an attested model: commit to a causal LM directory or an ONNX file (files stored by CID, weights
Merkle root, decoding or probe terms) in a manifest whose CID is the model id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from proofmarket.core.errors import UsageError
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested.documents import (
    AttestedManifest,
    GenerationTerms,
    OnnxTerms,
    TensorTerm,
    WeightsCommitment,
)
from proofmarket.systems.attested.terms import (
    DEFAULT_CHUNK,
    DEFAULT_MAX_TOKENS_CAP,
    DEFAULT_TOLERANCE,
    DEFAULT_TOPK,
    load_lm,
)
from proofmarket.systems.documents import put_artifact


def compile_attested(model_dir: Path, store: ArtifactStore, *, name: str | None = None,
                     max_tokens_cap: int = DEFAULT_MAX_TOKENS_CAP, chunk: int = DEFAULT_CHUNK,
                     topk: int = DEFAULT_TOPK, progress: Callable[[str], None] = lambda _: None
                     ) -> tuple[str, AttestedManifest]:
    """Commit to a causal LM directory (or an ONNX file): files stored by CID, weights Merkle root, dtype and
    decoding terms, in a manifest whose CID is the model id (nothing of when or where it was compiled: the same
    files give anyone the same id)."""
    if model_dir.is_file() and model_dir.suffix.lower() == ".onnx":
        return compile_attested_onnx(model_dir, store, name=name, topk=topk, progress=progress)
    if not 0 < max_tokens_cap <= 1 << 16:
        raise UsageError(f"--max-tokens-cap must be between 1 and 65536, not {max_tokens_cap}")
    lm = load_lm()
    files = lm.check_dir(model_dir)
    progress(f"loading {model_dir.name} ({len(files)} files)")
    model = lm.CausalLM(model_dir)
    progress("hashing the weights (Merkle root over every tensor)")
    root = model.weights_root()
    progress("storing the files by CID")
    refs = {p.name: put_artifact(store, p) for p in files}
    manifest = AttestedManifest(
        name=name or model_dir.name, files=refs,
        weights=WeightsCommitment(root=root, tensors=model.tensor_count, dtype="float32",
                                  leaves=model.weight_leaves()),
        architecture=model.architecture, context_length=model.context_length,
        vocab_size=int(getattr(model.config, "vocab_size", 0) or len(model.tokenizer)),
        generation=GenerationTerms(max_tokens_cap=max_tokens_cap, chunk_tokens=chunk, topk=topk,
                                   tolerance=DEFAULT_TOLERANCE.to_json(), eos_token_id=model.eos_token_id),
    )
    model_id = store.put_json(manifest.model_dump(mode="json"))
    return model_id, manifest


def compile_attested_onnx(path: Path, store: ArtifactStore, *, name: str | None = None, topk: int = DEFAULT_TOPK,
                          progress: Callable[[str], None] = lambda _: None) -> tuple[str, AttestedManifest]:
    """Commit to an ONNX file run by onnxruntime: initializers' Merkle root, probes, inputs, opset."""
    from proofmarket.systems.attested.onnx_attest import AttestedOnnx  # onnxruntime: for ONNX models only

    progress(f"loading {path.name} with onnxruntime")
    model = AttestedOnnx(path)
    progress(f"committing to {model.tensors} initializers and {len(model.probes)} probe tensor(s)")
    manifest = AttestedManifest(
        kind="onnx", name=name or path.stem, files={"model.onnx": put_artifact(store, path)},
        weights=WeightsCommitment(root=model.weights_root, tensors=model.tensors, dtype="as stored"),
        architecture=f"onnx (opset {model.opset})",
        onnx=OnnxTerms(inputs=[TensorTerm(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in model.info.inputs],
                       outputs=model.outputs, probes=model.probes, topk=topk, tolerance=DEFAULT_TOLERANCE.to_json(),
                       opset=model.opset),
        privacy={"name": "open-weights", "input": "public", "params": "public", "output": "public"},
    )
    model_id = store.put_json(manifest.model_dump(mode="json"))
    return model_id, manifest
