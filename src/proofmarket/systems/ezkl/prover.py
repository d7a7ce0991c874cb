"""The proving port and its EZKL adapter.

``Prover`` is what the rest of proofmarket sees: compile a model, prove an inference, verify a
bundle. ``EzklProver`` implements it with EZKL, a content-addressed store and a worker process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from proofmarket import models
from proofmarket.core.errors import ArtifactNotFound, EzklVersionMismatch, UnknownModel, WrongMode
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.bundle import (
    BundleInput,
    BundleModel,
    BundleOutput,
    BundleProof,
    BundleSrs,
    ProofBundle,
)
from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult, Progress, compile_model
from proofmarket.systems.ezkl.felts import felt_to_uint, keccak_packed, uint_hex
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.ezkl.salt import check_salt, circuit_input
from proofmarket.systems.ezkl.tuning import decode_outputs
from proofmarket.systems.ezkl.verify import VerifyReport, load_manifest, verify_bundle
from proofmarket.systems.ezkl.worker import ProofWorker


@dataclass
class ProveResult:
    bundle: ProofBundle
    bundle_cid: str
    salt: list[int] | None = None  # the opening of a hashed input's commitment: give it to the consumer


class Prover(Protocol):
    def compile(self, onnx_path: Path, samples_doc: Any, options: CompileOptions,
                progress: Progress = ...) -> CompileResult: ...

    def prove(self, model_id: str, inputs_doc: Any, timeout_s: float | None = None,
              salt: list[int] | None = None) -> ProveResult: ...

    def verify(self, bundle: dict[str, Any] | ProofBundle) -> VerifyReport: ...


class EzklProver:
    def __init__(self, store: LocalStore, work_dir: Path, worker: ProofWorker | None = None) -> None:
        self.store = store
        self.work_dir = work_dir
        self.worker = worker or ProofWorker()
        self._infos: dict[str, tuple[ModelManifest, models.ModelInfo]] = {}

    def compile(self, onnx_path: Path, samples_doc: Any, options: CompileOptions,
                progress: Progress = lambda _: None) -> CompileResult:
        return compile_model(onnx_path, samples_doc, self.store, options, progress)

    def model(self, model_id: str) -> tuple[ModelManifest, models.ModelInfo]:
        if model_id not in self._infos:
            try:
                manifest = load_manifest(self.store, model_id)
            except ArtifactNotFound as exc:
                raise UnknownModel(f"no compiled model with id {model_id} in the store") from exc
            except WrongMode:
                raise
            except Exception as exc:
                raise UnknownModel(f"{model_id} is not a model id (it names something else)") from exc
            info = models.load_model(self.store.path(manifest.onnx.cid))
            self._infos[model_id] = (manifest, info)
        return self._infos[model_id]

    def prove(self, model_id: str, inputs_doc: Any, timeout_s: float | None = None,
              salt: list[int] | None = None) -> ProveResult:
        """Prove ``inputs_doc`` on the model. A hashed-input model takes the consumer's ``salt`` (an
        escrow request commits to it in advance) or draws a fresh random one."""
        manifest, info = self.model(model_id)
        from proofmarket.systems.ezkl.ezkl_calls import EZKL_VERSION

        if manifest.ezkl_version != EZKL_VERSION:
            raise EzklVersionMismatch(f"model {model_id} was compiled with EZKL {manifest.ezkl_version}; this "
                                      f"prover runs EZKL {EZKL_VERSION}: refused (its keys could give a bad proof)",
                                      model_id=model_id, manifest=manifest.ezkl_version, prover=EZKL_VERSION)
        arrays = models.parse_inputs(inputs_doc, info)
        salt = check_salt(manifest.salt_elements, salt, required=False)
        flat = circuit_input(arrays, salt)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        job_dir = Path(tempfile.mkdtemp(prefix="prove-", dir=self.work_dir))
        try:
            result = self._run(manifest, job_dir, flat, timeout_s)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
        bundle = self._bundle(model_id, manifest, result, None if salt else flat)
        cid = self.store.put_json(bundle.to_doc())
        return ProveResult(bundle, cid, salt)

    def _run(self, manifest: ModelManifest, job_dir: Path, flat: list[list[float]],
             timeout_s: float | None) -> dict[str, Any]:
        (job_dir / "input.json").write_text(json.dumps({"input_data": flat}))
        paths = {
            "input": job_dir / "input.json", "witness": job_dir / "witness.json",
            "proof": job_dir / "proof.json", "calldata": job_dir / "calldata.bin",
            "compiled": self.store.path(manifest.compiled.cid), "pk": self.store.path(manifest.pk.cid),
            "vk": self.store.path(manifest.vk.cid), "srs": self.store.path(manifest.srs.cid),
            "settings": self.store.path(manifest.settings.cid),
        }
        return self.worker.prove(paths, timeout_s)

    def _bundle(self, model_id: str, manifest: ModelManifest, result: dict[str, Any],
                public_input: list[list[float]] | None) -> ProofBundle:
        proof = result["proof"]
        instances = [felt_to_uint(f) for f in proof["instances"][0]]
        layout = manifest.layout
        outputs = decode_outputs(result["outputs"], layout.output_scales, [tuple(o.shape) for o in manifest.outputs])
        return ProofBundle(
            model=BundleModel(
                id=model_id, name=manifest.name, onnx_sha256=manifest.onnx.sha256,
                settings_cid=manifest.settings.cid, vk_cid=manifest.vk.cid, vk_digest=manifest.vk.sha256,
                srs=BundleSrs(cid=manifest.srs.cid, sha256=manifest.srs.sha256, kind=manifest.srs.kind,
                              logrows=manifest.srs.logrows),
                verifier_bytecode_cid=manifest.verifier.bytecode.cid,
            ),
            privacy=manifest.privacy,
            layout=layout,
            input=BundleInput(visibility=manifest.privacy["input"], values=public_input,
                              commitment=keccak_packed(instances[: layout.input])),
            output=BundleOutput(values=[o.ravel().tolist() for o in outputs],
                                shapes=[list(o.shape) for o in manifest.outputs],
                                hash=keccak_packed(instances[len(instances) - layout.output:])),
            proof=BundleProof(hex="0x" + _proof_bytes(proof).hex(), instances=[uint_hex(v) for v in instances],
                              evm_calldata="0x" + result["calldata"]),
            prover={"node": socket.gethostname(), "pid": os.getpid(), "address": None},
            timings={k: round(v, 4) for k, v in result["timings"].items()},
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def verify(self, bundle: dict[str, Any] | ProofBundle) -> VerifyReport:
        return verify_bundle(bundle, self.store)

    def warm(self) -> None:
        """Start the prover process ahead of the first proof (the node does this when it starts)."""
        self.worker.warm()

    @property
    def ready(self) -> bool:
        return self.worker.ready

    def close(self) -> None:
        self.worker.close()


def _proof_bytes(proof: dict[str, Any]) -> bytes:
    """EZKL returns the proof as a byte list in the file and as hex in the returned dict."""
    raw = proof["proof"]
    return bytes.fromhex(raw.removeprefix("0x")) if isinstance(raw, str) else bytes(raw)
