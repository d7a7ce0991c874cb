"""The EZKL system (mode ``proven``, system ``ezkl-halo2-kzg-bn254``): its spec and its node runtime.

The rest of the EZKL code lives beside it in ``proofmarket.systems.ezkl`` (calls, compiler, tuner, SRS, verifier, worker
process); this module is what the rest of proofmarket sees of it, through ``systems/registry.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofmarket import models
from proofmarket.core.errors import ArtifactCorrupt, InputError, ProofMarketError, UsageError
from proofmarket.store import ArtifactStore, LocalStore
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.manifest import ModelManifest
from proofmarket.systems.ezkl.verify import verify_bundle
from proofmarket.systems.ids import PROVEN_SYSTEM
from proofmarket.systems.port import CompileRequest, Events, Execution, SystemContext, SystemSpec, VerifyReport

# the compiler (tuning, solc, the shared verifier's ABI) loads when a compile runs, not for a proof; the prover and
# its worker when a runtime is built, not for a verification
if TYPE_CHECKING:
    from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult, Progress
    from proofmarket.systems.ezkl.prover import EzklProver

GUARANTEE = ("zero-knowledge proof (EZKL, Halo2/KZG): the output came from the committed model on the committed "
             "input; final once the proof verifies")


class EzklSystem:
    """The node's EZKL runtime: one prover process per engine worker (``per_worker``: EZKL holds the GIL)."""

    system = PROVEN_SYSTEM
    mode = "proven"
    per_worker = True

    def __init__(self, prover: EzklProver, *, check_artifacts: bool = False) -> None:
        self.prover = prover
        self.check_artifacts = check_artifacts  # a worker on a shared disk: hash each model's artifacts once
        self._checked: set[str] = set()

    @classmethod
    def build(cls, context: SystemContext) -> EzklSystem:
        from proofmarket.systems.ezkl.prover import EzklProver
        from proofmarket.systems.ezkl.worker import InlineProofWorker, ProofWorker

        inline = bool(context.extra.get("inline_prover"))
        worker = InlineProofWorker() if inline else ProofWorker(timeout_s=context.settings.queue.proof_timeout_s,
                                                                    threads=context.settings.queue.threads_per_prover())
        store = context.store
        assert isinstance(store, LocalStore), "the EZKL prover reads artifacts from a local store"
        return cls(EzklProver(store, context.work_dir, worker),
                   check_artifacts=bool(context.extra.get("check_artifacts")))

    @property
    def store(self) -> ArtifactStore:
        return self.prover.store

    def compile(self, source: Path, samples_doc: Any, options: CompileOptions,
                progress: Progress = lambda _: None) -> CompileResult:
        return self.prover.compile(source, samples_doc, options, progress)

    def check(self, model_id: str, request: dict[str, Any]) -> None:
        _, info = self.prover.model(model_id)
        if "inputs" not in request:
            raise InputError("a proven model takes inputs: {\"input_data\": [...]} or named tensors")
        models.parse_inputs(request["inputs"], info)

    def price(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int:
        return listed_atomic

    def metered(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int | None:
        return None

    def run(self, model_id: str, request: dict[str, Any], events: Events | None = None) -> Execution:
        if self.check_artifacts and model_id not in self._checked:
            self._check_artifacts(model_id)
        result = self.prover.prove(model_id, request["inputs"], salt=request.get("salt"))
        return Execution(result.bundle_cid, result.bundle, {"output": result.bundle.output.values,
                                                            "salt": result.salt})

    def batch_key(self, model_id: str, request: dict[str, Any]) -> tuple[str, int] | None:
        """Calls to a model whose owner compiled batch circuits share proofs only when their caller opted in
        (``batch: true``): a shared proof shows each of them every slot's input and output."""
        if request.get("batch") is not True or request.get("salt") is not None:
            return None
        from proofmarket.systems.ezkl.prover import batchable

        manifest, _ = self.prover.model(model_id)
        return (model_id, max(b.size for b in manifest.batches)) if batchable(manifest) else None

    def run_batch(self, model_id: str, requests: list[dict[str, Any]]) -> list[Execution | ProofMarketError]:
        if self.check_artifacts and model_id not in self._checked:
            self._check_artifacts(model_id)
        results = self.prover.prove_batch(model_id, [request["inputs"] for request in requests])
        return [r if isinstance(r, ProofMarketError) else
                Execution(r.bundle_cid, r.bundle, {"output": r.bundle.output.values, "salt": r.salt}) for r in results]

    def _check_artifacts(self, model_id: str) -> None:
        """The artifacts a proof reads still hash to their CIDs (``artifact_corrupt`` otherwise: nothing proved)."""
        manifest, _ = self.prover.model(model_id)
        refs = [(name, getattr(manifest, name)) for name in ("onnx", "compiled", "pk", "vk", "srs", "settings")]
        refs += [(f"batch-{b.size} {name}", getattr(b, name)) for b in manifest.batches
                 for name in ("compiled", "pk", "vk", "srs", "settings")]
        for name, ref in refs:
            cid = ref.cid
            if not self.prover.store.verify(cid):
                raise ArtifactCorrupt(f"the stored {name} of model {model_id} does not hash to its CID {cid}: "
                                      "refused (fetch it again)", model_id=model_id, cid=cid)
        self._checked.add(model_id)

    def verify(self, bundle: Any, **options: Any) -> VerifyReport:
        return verify_bundle(bundle, self.prover.store)

    def describe(self) -> dict[str, Any]:
        from proofmarket.systems.ezkl.ezkl_calls import EZKL_VERSION

        return {"system": self.system, "mode": self.mode, "guarantee": GUARANTEE, "ezkl_version": EZKL_VERSION}

    def warm(self) -> None:
        self.prover.warm()

    @property
    def ready(self) -> bool:
        return self.prover.ready

    def close(self) -> None:
        self.prover.close()


def _verify(bundle: Any, store: ArtifactStore, **options: Any) -> VerifyReport:
    return verify_bundle(bundle, store)


def _input_info(manifest: ModelManifest, store: ArtifactStore) -> models.ModelInfo:
    return models.load_model(store.path(manifest.onnx.cid))


def _cacheable(manifest: ModelManifest) -> bool:
    """Only a public-profile model without salt: a private or hashed input carries its own salt, never reused."""
    return manifest.privacy.get("name") == "public" and manifest.salt_elements == 0


def _public_fields(m: ModelManifest) -> dict[str, Any]:
    """A proven model's public document: its tensors, commitments, verifier and accuracy."""
    return {"privacy_profile": dict(m.privacy), "inputs": [t.model_dump() for t in m.inputs],
            "outputs": [t.model_dump() for t in m.outputs], "is_classifier": m.is_classifier, "logrows": m.logrows,
            "commitments": {"onnx_sha256": m.onnx.sha256, "vk_digest": m.vk.sha256, "vk_cid": m.vk.cid,
                            "settings_cid": m.settings.cid,
                            "srs": {"cid": m.srs.cid, "sha256": m.srs.sha256, "kind": m.srs.kind,
                                    "logrows": m.srs.logrows}},
            "verifier": {"bytecode_cid": m.verifier.bytecode.cid, "abi_cid": m.verifier.abi.cid,
                         "source_cid": m.verifier.source.cid, "deployed_size": m.verifier.deployed_size},
            "shared_verifier": None if m.shared_verifier is None else {
                "source_cid": m.shared_verifier.source.cid, "bytecode_cid": m.shared_verifier.bytecode.cid,
                "runtime_keccak": m.shared_verifier.runtime_keccak, "vka_cid": m.shared_verifier.vka.cid,
                "vka_digest": m.shared_verifier.vka_digest},
            "batches": [{"size": b.size, "logrows": b.logrows,
                         "verifier_bytecode_cid": b.verifier.bytecode.cid if b.verifier else None} for b in m.batches],
            "accuracy": m.accuracy, "ezkl_version": m.ezkl_version, "input_domain": m.input_domain}


def _summary(m: ModelManifest) -> dict[str, str]:
    return {"logrows": str(m.logrows), "srs": m.srs.kind}


def _compile(request: CompileRequest) -> str:
    """An ONNX model and its samples into a circuit, keys and verifier (``compile_model``); ``options`` are
    ``CompileOptions``' (``srs`` required: an ``SrsProvider``; ``profile`` a ``PrivacyProfile``, public by default)."""
    from proofmarket.systems.ezkl.compiler import CompileOptions, compile_model
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    if not isinstance(request.store, LocalStore):
        raise UsageError("EZKL compiles into a local artifact store")
    options = dict(request.options)
    if "srs" not in options:
        raise UsageError("an EZKL compile needs an SRS (options['srs']: an SrsProvider)")
    profile = options.get("profile", "public")
    options["profile"] = PrivacyProfile.parse(profile) if isinstance(profile, str) else profile
    options.setdefault("name", request.name)
    unknown = sorted(set(options) - set(CompileOptions.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown EZKL compile option(s): {', '.join(unknown)}")
    return compile_model(request.source, request.samples, request.store, CompileOptions(**options),
                         request.progress).model_id


EZKL_SPEC = SystemSpec(system=PROVEN_SYSTEM, mode="proven", guarantee=GUARANTEE,
                       parse_manifest=ModelManifest.model_validate, parse_bundle=ProofBundle.parse, verify=_verify,
                       build=EzklSystem.build, listed_on_registry=True, input_info=_input_info,
                       cacheable=_cacheable, public_fields=_public_fields, summary=_summary, compile=_compile)
