"""The attested system: compile (commit to a model directory), generate (sign an attested bundle), verify
(signature and hashes only) and re-execute (one prefill pass against the commitments)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from proofmarket.core.errors import (
    ArtifactNotFound,
    AttestationMismatch,
    InputError,
    MaxTokensOverCap,
    PromptTooLong,
    UnknownModel,
    UsageError,
    VerificationFailed,
    WrongMode,
)
from proofmarket.core.settings import offline_model_hub
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested import toploc
from proofmarket.systems.attested.documents import (
    AttestedBundle,
    AttestedDecoding,
    AttestedInput,
    AttestedManifest,
    AttestedModel,
    AttestedOnnxBundle,
    AttestedOutput,
    AttestedProof,
    GenerationTerms,
    OnnxInput,
    OnnxModelRef,
    OnnxOutput,
    OnnxProbes,
    OnnxTerms,
    TensorTerm,
    WeightsCommitment,
    check_attestation,
    commitments_hash,
    decoding_hash,
    differing_tensors,
    probes_hash,
    sign_attestation,
    token_hash,
    values_hash,
)
from proofmarket.systems.attested.sampling import Decoding
from proofmarket.systems.ezkl.manifest import put_artifact

log = logging.getLogger("proofmarket.attested")

DEFAULT_MAX_TOKENS_CAP = 256
DEFAULT_CHUNK = 32
DEFAULT_TOPK = 128
MAX_PROMPT_CHARS = 64 * 1024
MAX_TEMPERATURE = 10.0
DEFAULT_TOLERANCE = toploc.Tolerance(max_steps=6, min_agree=0.9)


def _lm() -> Any:
    offline_model_hub()  # never reach for a hub, whatever the caller's environment
    from proofmarket.systems.attested import lm

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    return lm


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
    lm = _lm()
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
    from proofmarket.systems.attested.onnx_attest import AttestedOnnx

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


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None

    @classmethod
    def of(cls, doc: Any, default_max_tokens: int = 64) -> GenerateRequest:
        """Validate a request document; ``max_tokens`` defaults to ``default_max_tokens`` (64, or the model's
        cap when smaller)."""
        if not isinstance(doc, dict):
            raise InputError("a generate request is a JSON object: {prompt, max_tokens, temperature?, seed?}")
        prompt = doc.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise InputError("prompt must be a non-empty string")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"the prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are taken")
        max_tokens = doc.get("max_tokens")
        max_tokens = default_max_tokens if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InputError("max_tokens must be a positive integer")
        temperature = doc.get("temperature", 0.0)
        if not isinstance(temperature, int | float) or isinstance(temperature, bool) or \
                not 0.0 <= float(temperature) <= MAX_TEMPERATURE:
            raise InputError(f"temperature must be a number between 0 (greedy) and {MAX_TEMPERATURE}")
        seed = doc.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise InputError("seed must be an integer between 0 and 2^63 - 1")
        if float(temperature) > 0 and seed is None:
            seed = secrets.randbelow(2**63)  # sampling is reproducible only with its seed: draw one, commit to it
        return cls(prompt, max_tokens, float(temperature), seed if float(temperature) > 0 else None)

    def price_atomic(self, per_1k_tokens: int) -> int:
        """What a call asking for ``max_tokens`` costs (the cap is charged: the exact scheme)."""
        return max(1, -(-per_1k_tokens * self.max_tokens // 1000))


class AttestedRuntime:
    """Loaded models by id (files materialised from the store), generation under a per-model lock."""

    def __init__(self, store: ArtifactStore, work_dir: Path) -> None:
        self.store, self.work_dir = store, work_dir
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def manifest(self, model_id: str) -> AttestedManifest:
        try:
            doc = self.store.get_json(model_id)
        except ArtifactNotFound as exc:
            raise UnknownModel(f"no model with id {model_id} in the store", model_id=model_id) from exc
        return AttestedManifest.model_validate(doc)

    def model(self, model_id: str) -> Any:
        """The loaded causal LM of ``model_id``."""
        self.lm_manifest(model_id)
        with self._guard:
            lock = self._locks.setdefault(model_id, threading.Lock())
        with lock:
            if model_id not in self._models:
                manifest = self.manifest(model_id)
                folder = materialise(self.store, manifest, self.work_dir / "attested" / model_id)
                loaded = _lm().CausalLM(folder)
                if loaded.weights_root() != manifest.weights.root:
                    raise AttestationMismatch(f"the stored files of {model_id} do not hash to its weights root")
                self._models[model_id] = loaded
            return self._models[model_id]

    def lm_manifest(self, model_id: str) -> AttestedManifest:
        manifest = self.manifest(model_id)
        if manifest.kind != "causal-lm" or manifest.generation is None or manifest.context_length is None:
            raise WrongMode(f"model {model_id} is an attested ONNX model: call POST /v1/models/{model_id}/infer",
                            model_id=model_id, kind=manifest.kind)
        return manifest

    def onnx_model(self, model_id: str) -> Any:
        manifest = self.manifest(model_id)
        if manifest.kind != "onnx" or manifest.onnx is None:
            raise WrongMode(f"model {model_id} generates text: call POST /v1/models/{model_id}/generate",
                            model_id=model_id, kind=manifest.kind)
        with self._guard:
            lock = self._locks.setdefault(model_id, threading.Lock())
        with lock:
            if model_id not in self._models:
                from proofmarket.systems.attested.onnx_attest import AttestedOnnx

                folder = materialise(self.store, manifest, self.work_dir / "attested" / model_id)
                loaded = AttestedOnnx(folder / "model.onnx", manifest.onnx.probes)
                if loaded.weights_root != manifest.weights.root:
                    raise AttestationMismatch(f"the stored file of {model_id} does not hash to its weights root")
                self._models[model_id] = loaded
            return self._models[model_id]

    def infer(self, model_id: str, inputs_doc: Any, signer: LocalAccount, chain_id: int
              ) -> tuple[AttestedOnnxBundle, str]:
        """Run an attested ONNX model on one input and sign the bundle (commitments of probes and outputs)."""
        manifest = self.manifest(model_id)
        model = self.onnx_model(model_id)
        assert manifest.onnx is not None
        run = model.run(inputs_doc, manifest.onnx.topk)
        probes = OnnxProbes(tensors=[*model.probes, *model.outputs], topk=manifest.onnx.topk)
        commitments = ["0x" + c.hex() for c in run.commitments]
        values = [a.astype(np.float64).ravel().tolist() for a in run.inputs]
        outputs = [o.astype(np.float64).ravel().tolist() for o in run.outputs]
        fields = {"model_id": model_id, "weights_root": manifest.weights.root,
                  "input_commitment": values_hash(values), "output_hash": values_hash(outputs),
                  "decoding_hash": probes_hash(probes), "commitments_hash": commitments_hash(commitments)}
        bundle = AttestedOnnxBundle(
            model=OnnxModelRef(id=model_id, name=manifest.name, weights_root=manifest.weights.root,
                               onnx_sha256=manifest.files["model.onnx"].sha256),
            privacy=manifest.privacy, input=OnnxInput(values=values, commitment=fields["input_commitment"]),
            output=OnnxOutput(values=outputs, shapes=[list(o.shape) for o in run.outputs], hash=fields["output_hash"]),
            probes=probes,
            proof=AttestedProof(commitments=commitments, commitments_hash=fields["commitments_hash"],
                                attestation=sign_attestation(signer, fields, chain_id)),
            prover={"node": socket.gethostname(), "pid": os.getpid(), "address": signer.address},
            timings={"run_s": round(run.seconds, 4)}, created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        return bundle, self.store.put_json(bundle.to_doc())

    def request(self, model_id: str, doc: Any) -> GenerateRequest:
        """``doc`` as a request for this model (max_tokens defaults to 64, or the cap when it is smaller)."""
        terms = self.lm_manifest(model_id).generation
        assert terms is not None
        return GenerateRequest.of(doc, default_max_tokens=min(64, terms.max_tokens_cap))

    def check(self, model_id: str, request: GenerateRequest) -> list[int]:
        """The prompt's tokens, once the request fits the model's cap and context (422 otherwise)."""
        manifest = self.lm_manifest(model_id)
        assert manifest.generation is not None and manifest.context_length is not None
        cap = manifest.generation.max_tokens_cap
        if request.max_tokens > cap:
            raise MaxTokensOverCap(f"max_tokens is {request.max_tokens}; this model's cap is {cap}",
                                   max_tokens=request.max_tokens, cap=cap)
        tokens = self.model(model_id).encode(request.prompt)
        if not tokens:
            raise InputError("the prompt encodes to no tokens")
        if len(tokens) + request.max_tokens > manifest.context_length:
            raise PromptTooLong(f"the prompt is {len(tokens)} tokens; with max_tokens {request.max_tokens} that is "
                                f"above the model's context length of {manifest.context_length}",
                                prompt_tokens=len(tokens), context_length=manifest.context_length)
        return list(tokens)

    def generate(self, model_id: str, request: GenerateRequest, signer: LocalAccount, chain_id: int,
                 on_token: Callable[[int, int, str], None] | None = None,
                 on_chunk: Callable[[int, str], None] | None = None) -> tuple[AttestedBundle, str]:
        manifest = self.lm_manifest(model_id)
        prompt_tokens = self.check(model_id, request)
        model = self.model(model_id)
        terms = manifest.generation
        assert terms is not None
        decoding = Decoding(request.max_tokens, request.temperature, request.seed)

        def token(position: int, t: int) -> None:
            if on_token is not None:
                on_token(position, t, model.decode([t]))

        def chunk(index: int, data: bytes) -> None:
            if on_chunk is not None:
                on_chunk(index, "0x" + data.hex())

        with self._locks[model_id]:
            gen = model.generate(prompt_tokens, decoding, chunk=terms.chunk_tokens, topk=terms.topk,
                                 on_token=token, on_chunk=chunk)
        bundle = build_bundle(model_id, manifest, request, gen, signer, chain_id, model.decode(gen.tokens))
        return bundle, self.store.put_json(bundle.to_doc())


def materialise(store: ArtifactStore, manifest: AttestedManifest, folder: Path) -> Path:
    """The model directory rebuilt from the store under its original file names (links, or copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, ref in manifest.files.items():
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise VerificationFailed(f"the manifest names a file outside the model directory: {name!r}")
        target = folder / name
        if target.exists():
            continue
        src = store.path(ref.cid)
        tmp = folder / f".{name}.tmp{os.getpid()}"
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    return folder


def build_bundle(model_id: str, manifest: AttestedManifest, request: GenerateRequest, gen: Any,
                 signer: LocalAccount, chain_id: int, text: str) -> AttestedBundle:
    terms = manifest.generation
    assert terms is not None
    decoding = AttestedDecoding(strategy="greedy" if request.temperature <= 0 else "sample",
                                max_tokens=request.max_tokens, temperature=request.temperature, seed=request.seed,
                                chunk_tokens=terms.chunk_tokens, topk=terms.topk)
    commitments = ["0x" + c.hex() for c in gen.commitments]
    fields = {"model_id": model_id, "weights_root": manifest.weights.root,
              "input_commitment": token_hash(gen.prompt_tokens), "output_hash": token_hash(gen.tokens),
              "decoding_hash": decoding_hash(decoding), "commitments_hash": commitments_hash(commitments)}
    return AttestedBundle(
        model=AttestedModel(id=model_id, name=manifest.name, weights_root=manifest.weights.root,
                            architecture=manifest.architecture),
        privacy=manifest.privacy,
        input=AttestedInput(prompt=request.prompt, tokens=gen.prompt_tokens, commitment=fields["input_commitment"]),
        output=AttestedOutput(text=text, tokens=gen.tokens, hash=fields["output_hash"],
                              finish_reason=gen.finish_reason),
        decoding=decoding,
        proof=AttestedProof(commitments=commitments, commitments_hash=fields["commitments_hash"],
                            attestation=sign_attestation(signer, fields, chain_id)),
        prover={"node": socket.gethostname(), "pid": os.getpid(), "address": signer.address},
        timings=gen.timings,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


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


@dataclass(frozen=True)
class OnnxRecheck:
    tensors: int
    seconds: float

    def summary(self) -> str:
        return f"reproduced: {self.tensors} committed tensor(s) agree"


def _reexecute_onnx(bundle: AttestedOnnxBundle, store: ArtifactStore, work_dir: Path,
                    model_path: Path | None, threads: int | None) -> OnnxRecheck:
    import time

    from proofmarket.systems.attested.onnx_attest import AttestedOnnx

    manifest = _manifest_in(store, bundle.model.id)
    if model_path is None:
        if manifest is None:
            raise ArtifactNotFound(f"the manifest of model {bundle.model.id} is not here: pass --model-dir or fetch "
                                   "the model's artifacts first")
        model_path = materialise(store, manifest, work_dir / "attested" / bundle.model.id) / "model.onnx"
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
    the files the manifest names in ``store``. An ONNX bundle: one run, every committed tensor checked."""
    if isinstance(bundle, AttestedOnnxBundle):
        return _reexecute_onnx(bundle, store, work_dir, model_dir, threads)
    lm = _lm()
    manifest = _manifest_in(store, bundle.model.id)
    if model_dir is None:
        if manifest is None:
            raise ArtifactNotFound(f"the manifest of model {bundle.model.id} is not here: pass --model-dir or fetch "
                                   "the model's artifacts first")
        model_dir = materialise(store, manifest, work_dir / "attested" / bundle.model.id)
    model = lm.CausalLM(model_dir)
    root = model.weights_root()
    if root != bundle.model.weights_root:
        which = differing_tensors(manifest.weights.leaves, model.weight_leaves()) \
            if manifest is not None and manifest.weights.leaves else f"root {root[:18]}..."
        raise AttestationMismatch(f"the weights in {model_dir.name} are not the ones the bundle commits to ({which})")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
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
