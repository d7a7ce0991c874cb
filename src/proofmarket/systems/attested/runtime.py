"""The attested runtime: loaded models by id (files materialised from the store, checked against their weights
root), generation under a per-model lock, attested ONNX inference, and the signed bundles they answer with."""

from __future__ import annotations

import threading
from collections.abc import Callable
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
    WrongMode,
)
from proofmarket.store import ArtifactStore
from proofmarket.systems.attested.documents import (
    AttestedBundle,
    AttestedDecoding,
    AttestedInput,
    AttestedManifest,
    AttestedModel,
    AttestedOnnxBundle,
    AttestedOutput,
    AttestedProof,
    OnnxInput,
    OnnxModelRef,
    OnnxOutput,
    OnnxProbes,
    commitments_hash,
    decoding_hash,
    probes_hash,
    sign_attestation,
    token_hash,
    values_hash,
)
from proofmarket.systems.attested.sampling import Decoding
from proofmarket.systems.attested.terms import GenerateRequest, load_lm, materialise


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
                loaded = load_lm().CausalLM(folder)
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
                from proofmarket.systems.attested.onnx_attest import AttestedOnnx  # onnxruntime: for ONNX models only

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
            prover={"address": signer.address},
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
        prover={"address": signer.address},
        timings=gen.timings,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
