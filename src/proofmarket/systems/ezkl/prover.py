"""The proving port and its EZKL adapter.

``Prover`` is what the rest of proofmarket sees: compile a model, prove an inference, verify a
bundle. ``EzklProver`` implements it with EZKL, a content-addressed store and a worker process.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from proofmarket import models
from proofmarket.core.errors import (
    ArtifactNotFound,
    EzklVersionMismatch,
    ProofMarketError,
    ProvingError,
    UnknownModel,
    UsageError,
    WitnessError,
    WrongMode,
)
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.batching import BATCHABLE_PROFILES, batch_input, plan, slot_of
from proofmarket.systems.ezkl.bundle import (
    BundleBatch,
    BundleInput,
    BundleModel,
    BundleOutput,
    BundleProof,
    BundleSrs,
    ProofBundle,
)
from proofmarket.systems.ezkl.felts import felt_to_uint, keccak_packed, uint_hex
from proofmarket.systems.ezkl.manifest import BatchCircuit, ModelManifest
from proofmarket.systems.ezkl.salt import check_salt, circuit_input
from proofmarket.systems.ezkl.verify import load_manifest, verify_bundle
from proofmarket.systems.ezkl.worker import ProofWorker
from proofmarket.systems.port import VerifyReport

if TYPE_CHECKING:  # the compiler (tuning, solc checks) loads when a compile runs, not for a proof
    from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult, Progress

log = logging.getLogger(__name__)


def batchable(manifest: ModelManifest) -> bool:
    """Calls to this model may share a proof: a public-profile model with batch circuits (``batching.py``)."""
    return bool(manifest.batches) and manifest.privacy.get("name") in BATCHABLE_PROFILES and not manifest.salt_elements


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
        self._infos: dict[str, tuple[ModelManifest, models.InputSignature]] = {}

    def compile(self, onnx_path: Path, samples_doc: Any, options: CompileOptions,
                progress: Progress = lambda _: None) -> CompileResult:
        from proofmarket.systems.ezkl.compiler import compile_model

        return compile_model(onnx_path, samples_doc, self.store, options, progress)

    def model(self, model_id: str) -> tuple[ModelManifest, models.InputSignature]:
        if model_id not in self._infos:
            try:
                manifest = load_manifest(self.store, model_id)
            except ArtifactNotFound as exc:
                raise UnknownModel(f"no compiled model with id {model_id} in the store") from exc
            except WrongMode:
                raise
            except Exception as exc:
                raise UnknownModel(f"{model_id} is not a model id (it names something else)") from exc
            # what a call's input is checked against, from the manifest: no ONNX file to load (nor onnx to import)
            self._infos[model_id] = (manifest, manifest.input_signature())
        return self._infos[model_id]

    def prove(self, model_id: str, inputs_doc: Any, timeout_s: float | None = None,
              salt: list[int] | None = None) -> ProveResult:
        """Prove ``inputs_doc`` on the model. A hashed-input model takes the consumer's ``salt`` (an
        escrow request commits to it in advance) or draws a fresh random one."""
        manifest, info = self._current(model_id)
        salt = check_salt(manifest.salt_elements, salt, required=False)
        flat = circuit_input(models.parse_flat(inputs_doc, info), salt)
        result = self._run(manifest, flat, timeout_s)
        public = flat if manifest.privacy["input"] == "public" else None  # hashed or a slice's: never in the bundle
        bundle = self._bundle(model_id, manifest, manifest, result, public)
        cid = self.store.put_json(bundle.to_doc())
        return ProveResult(bundle, cid, salt)

    def prove_batch(self, model_id: str, inputs_docs: list[Any],
                    timeout_s: float | None = None) -> list[ProveResult | ProofMarketError]:
        """Prove several calls to one model, in shared proofs where a batch circuit holds them (``batching.py``):
        each call gets its own bundle (its slot) or its own error. An input that does not parse fails only its call.
        A batch whose proof fails finds its failing calls without proving every caller again (``_failed``): a
        failed call is charged nothing, and costs the node a bounded number of proofs."""
        manifest, info = self._current(model_id)
        answers: list[ProveResult | ProofMarketError | None] = [None] * len(inputs_docs)
        flats: dict[int, list[list[float]]] = {}
        for i, doc in enumerate(inputs_docs):
            try:
                flats[i] = circuit_input(models.parse_flat(doc, info))
            except ProofMarketError as exc:
                answers[i] = exc
        batches = manifest.batches if batchable(manifest) else []
        group = _Group(model_id, manifest, {1: manifest.logrows, **{b.size: b.logrows for b in batches}}, flats,
                       inputs_docs, answers, timeout_s)
        self._prove_group(group, list(flats), screened=False)
        return [a if a is not None else ProvingError("the call was not proven") for a in answers]

    def _prove_group(self, group: _Group, calls: list[int], *, screened: bool) -> None:
        """Prove ``calls`` in the cheapest plan of batch circuits (``batching.plan``), each call's answer in
        ``group.answers``."""
        for size, count in plan(len(calls), group.logrows):
            chunk, calls = calls[:count], calls[count:]
            if size == 1:
                for i in chunk:
                    group.answers[i] = self._alone(group.model_id, group.docs[i], group.timeout_s)
                continue
            failed = self._prove_in(group, chunk, size)
            if failed is not None:
                log.warning("a batch of %d calls to %s failed (%s): finding the failing calls", len(chunk),
                            group.model_id, failed.message)
                self._failed(group, chunk, failed, screened=screened)

    def _prove_in(self, group: _Group, calls: list[int], size: int) -> ProofMarketError | None:
        """``calls`` in one proof of the batch circuit of ``size``, each answer its slot; the error if it failed."""
        circuit = group.manifest.batch(size)
        assert circuit is not None
        flats = [group.flats[i] for i in calls]
        try:
            result = self._run(circuit, batch_input(flats, size), group.timeout_s)
        except ProofMarketError as exc:
            return exc
        for i, proved in zip(calls, self._slots(group.model_id, group.manifest, circuit, result, flats), strict=True):
            group.answers[i] = proved
        return None

    def _failed(self, group: _Group, chunk: list[int], exc: ProofMarketError, *, screened: bool) -> None:
        """A batch of ``chunk`` failed: find the calls that fail it, at a bounded cost.

            the witness failed   each call's witness alone (no proof: milliseconds) in the model's own circuit;
                                 a call whose witness fails fails with that error, unproven; the rest are proven
                                 together again. One bad input among K costs 2 batch proofs and K witnesses.
            anything else        (or the rest failing again) halves the batch: each half is proven in one proof of
                                 the smallest batch circuit that holds it, and a half that fails is halved again,
                                 down to a call alone. One failing call among K costs at most 2 * ceil(log2 K)
                                 proofs beside the first, whatever batch sizes the model has; m failing calls at
                                 most 2K - 2 (the halving tree's nodes).
        """
        if isinstance(exc, WitnessError) and not screened:
            for i in chunk:
                problem = self._witness_fails(group.manifest, group.flats[i], group.timeout_s)
                if problem is not None:
                    group.answers[i] = problem
            self._prove_group(group, [i for i in chunk if group.answers[i] is None], screened=True)
            return
        half = len(chunk) // 2  # a failed chunk holds two calls or more (one call is proven alone, never batched)
        for part in (chunk[:half], chunk[half:]):
            self._prove_together(group, part)

    def _prove_together(self, group: _Group, calls: list[int]) -> None:
        """``calls`` in one proof of the smallest batch circuit that holds them (one call: alone); a failure halves
        them again (``_failed``): one proof per node of the halving tree, whatever batch sizes the model has."""
        if len(calls) == 1:
            group.answers[calls[0]] = self._alone(group.model_id, group.docs[calls[0]], group.timeout_s)
            return
        failed = self._prove_in(group, calls, min(k for k in group.logrows if k >= len(calls)))
        if failed is not None:
            self._failed(group, calls, failed, screened=True)

    def witness_outputs(self, model_id: str, flat: list[list[float]], timeout_s: float | None = None,
                        scales: list[int] | None = None) -> list[list[float]]:
        """The model's circuit outputs on ``flat`` (its input as the circuit takes it), as floats at ``scales`` (its
        output scales by default): the witness alone, in the prover's process (a sliced call's chain, which hands
        a slice's outputs over at the next slice's input scale: ``sliced.py``)."""
        manifest, _ = self._current(model_id)
        result = self._run(manifest, flat, timeout_s, task="witness")
        return ezkl_calls.decode_values(result["outputs"], scales or manifest.layout.output_scales,
                                        [math.prod(o.shape) for o in manifest.outputs])

    def _witness_fails(self, manifest: ModelManifest, flat: list[list[float]],
                       timeout_s: float | None) -> ProofMarketError | None:
        """The error of this call's witness alone in the model's own circuit, or None when it computes."""
        try:
            self._run(manifest, flat, timeout_s, task="witness")
        except ProofMarketError as exc:
            return exc
        return None

    def prove_together(self, model_id: str, inputs_docs: list[Any], size: int,
                       timeout_s: float | None = None) -> list[ProveResult]:
        """Prove ``inputs_docs`` in one proof of the batch circuit of ``size`` calls (the unused slots padded), in
        order: what ``fulfillBatch`` settles. Any input that does not parse, or the proof failing, fails them all."""
        manifest, info = self._current(model_id)
        circuit = manifest.batch(size) if batchable(manifest) else None
        if circuit is None or not 1 <= len(inputs_docs) <= size:
            raise UsageError(f"model {model_id} has no batch circuit of {size} calls for {len(inputs_docs)} call(s)",
                             model_id=model_id, size=size)
        flats = [circuit_input(models.parse_flat(doc, info)) for doc in inputs_docs]
        result = self._run(circuit, batch_input(flats, size), timeout_s)
        return self._slots(model_id, manifest, circuit, result, flats)

    def _alone(self, model_id: str, inputs_doc: Any, timeout_s: float | None) -> ProveResult | ProofMarketError:
        try:
            return self.prove(model_id, inputs_doc, timeout_s)
        except ProofMarketError as exc:
            return exc

    def _slots(self, model_id: str, manifest: ModelManifest, circuit: BatchCircuit, result: dict[str, Any],
               flats: list[list[list[float]]]) -> list[ProveResult]:
        out = []
        for slot, flat in enumerate(flats):
            bundle = self._bundle(model_id, manifest, circuit, result, flat, slot)
            out.append(ProveResult(bundle, self.store.put_json(bundle.to_doc())))
        return out

    def _current(self, model_id: str) -> tuple[ModelManifest, models.InputSignature]:
        manifest, info = self.model(model_id)
        from proofmarket.systems.ezkl.ezkl_calls import EZKL_VERSION

        if manifest.ezkl_version != EZKL_VERSION:
            raise EzklVersionMismatch(f"model {model_id} was compiled with EZKL {manifest.ezkl_version}; this "
                                      f"prover runs EZKL {EZKL_VERSION}: refused (its keys could give a bad proof)",
                                      model_id=model_id, manifest=manifest.ezkl_version, prover=EZKL_VERSION)
        return manifest, info

    def _run(self, circuit: ModelManifest | BatchCircuit, flat: list[list[float]],
             timeout_s: float | None, task: str = "prove") -> dict[str, Any]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        job_dir = Path(tempfile.mkdtemp(prefix="prove-", dir=self.work_dir))
        try:
            (job_dir / "input.json").write_text(json.dumps({"input_data": flat}))
            paths = {
                "input": job_dir / "input.json", "witness": job_dir / "witness.json",
                "proof": job_dir / "proof.json", "calldata": job_dir / "calldata.bin",
                "compiled": self.store.path(circuit.compiled.cid), "pk": self.store.path(circuit.pk.cid),
                "vk": self.store.path(circuit.vk.cid), "srs": self.store.path(circuit.srs.cid),
                "settings": self.store.path(circuit.settings.cid),
            }
            return self.worker.witness(paths, timeout_s) if task == "witness" else self.worker.prove(paths, timeout_s)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _bundle(self, model_id: str, manifest: ModelManifest, circuit: ModelManifest | BatchCircuit,
                result: dict[str, Any], public_input: list[list[float]] | None,
                slot: int | None = None) -> ProofBundle:
        proof = result["proof"]
        instances = [felt_to_uint(f) for f in proof["instances"][0]]
        layout = circuit.layout
        if slot is None:
            mine, outs, scales = instances[: layout.input], instances[len(instances) - layout.output:], \
                layout.output_scales
            felts = result["outputs"]
        else:
            assert isinstance(circuit, BatchCircuit)
            where = slot_of(layout, circuit.size, slot)
            mine, outs, scales = instances[where.input], instances[where.output], where.output_scales
            n = len(manifest.outputs)
            felts = result["outputs"][slot * n:(slot + 1) * n]
        outputs = ezkl_calls.decode_values(felts, scales, [math.prod(o.shape) for o in manifest.outputs])
        if manifest.privacy.get("output") == "committed":  # a slice's output: only its commitment leaves (sliced.py)
            outputs = []
        return ProofBundle(
            model=BundleModel(
                id=model_id, name=manifest.name, onnx_sha256=manifest.onnx.sha256,
                settings_cid=circuit.settings.cid, vk_cid=circuit.vk.cid, vk_digest=circuit.vk.sha256,
                srs=BundleSrs(cid=circuit.srs.cid, sha256=circuit.srs.sha256, kind=circuit.srs.kind,
                              logrows=circuit.srs.logrows),
                verifier_bytecode_cid=circuit.verifier.bytecode.cid if circuit.verifier else None,
            ),
            privacy=manifest.privacy,
            layout=layout,
            input=BundleInput(visibility=manifest.privacy["input"], values=public_input,
                              commitment=keccak_packed(mine)),
            output=BundleOutput(values=outputs,
                                shapes=[list(o.shape) for o in manifest.outputs], hash=keccak_packed(outs)),
            proof=BundleProof(hex="0x" + _proof_bytes(proof).hex(), instances=[uint_hex(v) for v in instances],
                              evm_calldata="0x" + result["calldata"]),
            prover={"address": None},  # no host name or process id: nothing of the machine
            timings={k: round(v, 4) for k, v in result["timings"].items()},
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            batch=BundleBatch(size=circuit.size, slot=slot) if isinstance(circuit, BatchCircuit) and slot is not None \
            else None,
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


@dataclass
class _Group:
    """The calls of one ``prove_batch``: the model, its circuits' logrows by size, each call's circuit input and
    document, and the answers being filled in."""

    model_id: str
    manifest: ModelManifest
    logrows: dict[int, int]
    flats: dict[int, list[list[float]]]
    docs: list[Any]
    answers: list[ProveResult | ProofMarketError | None]
    timeout_s: float | None
