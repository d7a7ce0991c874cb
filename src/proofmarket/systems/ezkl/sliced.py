"""One model as linked slices: each slice its own circuit, proven apart (in parallel), verified as one proof.

    compile   the graph is cut at single-tensor boundaries (``models/slicing.py``); each slice is compiled by the one
              compiler (``compile_model``) into a model of its own, with its own settings and keys:
                  slice 0        the model's input as the owner chose (public or hashed with a salt); output hashed
                  slice k        input ``linked`` (hashed, no salt), output hashed
                  last slice     input linked, output public
              A hashed output and a linked input of the same tensor are the same Poseidon hash when both sides
              quantise it at the same scale: slice k's input scale is slice k-1's output scale (the search may use
              that scale alone), and when that scale is too coarse for slice k, every slice is compiled again from
              the next finer scale. The sliced manifest lists the slices' model ids; its CID is the model id.
    prove     the witnesses run in order (slice k's input: slice k-1's quantised output, as the circuit holds it),
              then every slice is proven on its own prover, in parallel; intermediate values never leave the prover.
    verify    every slice's bundle verifies on its own (``verify_bundle``: its model is the manifest's slice k),
              each link holds (slice k's output hash instances == slice k+1's input hash instances), and the call's
              input and output are the first slice's and the last slice's. A swapped, reordered, foreign or replayed
              slice proof breaks a model id or a link.

What the chain binds is what one proof binds: the output came from the committed slices (the committed model, cut)
on the committed input. A link reveals a Poseidon hash of an intermediate tensor, not its values.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from proofmarket import models
from proofmarket.core.errors import AccuracyNotMet, BundleError, UsageError, VerificationFailed
from proofmarket.models import slicing
from proofmarket.models.external import self_contained
from proofmarket.store import ArtifactStore, LocalStore
from proofmarket.systems.documents import ArtifactRef, put_artifact
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.bundle import BundleInput, BundleOutput, ProofBundle
from proofmarket.systems.ezkl.candidates import DEFAULT_SCALES, AccuracyBound, Candidate
from proofmarket.systems.ezkl.manifest import ModelManifest, TensorDoc
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.verify import VERIFY_PROOF_SELECTOR
from proofmarket.systems.port import VerifyReport

SLICED_KIND: Literal["proofmarket/sliced-model"] = "proofmarket/sliced-model"
SLICED_BUNDLE: Literal["proofmarket/sliced-bundle"] = "proofmarket/sliced-bundle"
Progress = Callable[[str], None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlicedManifest(_Strict):
    kind: Literal["proofmarket/sliced-model"] = SLICED_KIND
    system: Literal["ezkl-halo2-kzg-bn254-sliced"] = "ezkl-halo2-kzg-bn254-sliced"  # ids.SLICED_SYSTEM
    mode: Literal["proven"] = "proven"
    name: str
    # the whole model as it was cut (normalised to batch 1): anyone holding it cuts it again by ``plan`` and finds
    # each slice's ONNX commitment; kept in the store, public only as the slices' weights are (never, params=fixed)
    onnx: ArtifactRef
    slices: list[str]  # the slices' model ids, in order
    inputs: list[TensorDoc]
    outputs: list[TensorDoc]
    privacy: dict[str, str]  # the call's: the first slice's input, the last slice's output
    plan: dict[str, Any]  # slicing.SlicePlan.to_json(): the cuts and each slice's work
    accuracy: dict[str, Any]  # end to end, the slices' witnesses in order against onnxruntime
    ezkl_version: str
    artifacts: list[str]  # what anyone may fetch: each slice's manifest and its public artifacts

    @property
    def public_cids(self) -> list[str]:
        return list(self.artifacts)


class SlicedRef(_Strict):
    id: str  # the sliced model's id
    name: str


class SlicedProof(_Strict):
    """The call as the chain checks it in one transaction (``contracts/SlicedVerifier.sol``): what a market's
    ``fulfill`` or an ``eth_call`` of the model's verifier is sent; derived from the slices, checked against them."""

    hex: str  # abi.encode(bytes[] proofs, uint256[][] sliceInstances)
    instances: list[str]  # the call's, as one circuit lays them out: the first slice's inputs, the last's outputs
    evm_calldata: str  # verifyProof(bytes,uint256[]) of the two


class SlicedBundle(_Strict):
    format: Literal["proofmarket/proof-bundle"] = "proofmarket/proof-bundle"  # documents.BUNDLE_FORMAT
    kind: Literal["proofmarket/sliced-bundle"] = SLICED_BUNDLE
    system: Literal["ezkl-halo2-kzg-bn254-sliced"] = "ezkl-halo2-kzg-bn254-sliced"
    mode: Literal["proven"] = "proven"
    model: SlicedRef
    input: BundleInput  # the first slice's
    output: BundleOutput  # the last slice's
    slices: list[dict[str, Any]]  # each slice's proof bundle, in order
    proof: SlicedProof
    payment: dict[str, Any] | None = None  # a paid call's (as a proof bundle's: tickets.py)
    receipt: dict[str, Any] | None = None  # the node's signed receipt over the pure bundle's CID

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclasses.dataclass
class SlicedCompile:
    model_id: str
    manifest: SlicedManifest
    slices: list[ModelManifest]


def is_sliced(doc: object) -> bool:
    return isinstance(doc, dict) and doc.get("kind") in (SLICED_KIND, SLICED_BUNDLE)


def load_sliced(store: ArtifactStore, model_id: str) -> SlicedManifest:
    try:
        return SlicedManifest.model_validate(store.get_json(model_id))
    except ValueError as exc:
        raise BundleError(f"{model_id} does not name a sliced model") from exc


# --- compile ------------------------------------------------------------------------------------------------------
def compile_sliced(onnx_path: Path, samples_doc: Any, store: LocalStore, options: Any, slices: int,
                   progress: Progress = lambda _: None) -> SlicedCompile:
    """Compile the model at ``onnx_path`` as ``slices`` linked slices (fewer when its graph has fewer cuts) with the
    one compiler; ``options``: the model's ``CompileOptions`` (its profile is the call's input's)."""
    from proofmarket.systems.ezkl.compiler import compile_model

    if options.profile.params != "fixed":
        raise UsageError("a sliced model keeps its weights in its keys (params=fixed): hashed weights are for one "
                         "circuit")
    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        onnx_path = self_contained(onnx_path, work / "model", models.MAX_MODEL_BYTES)
        info = models.load_model(onnx_path)
        samples = models.parse_samples(samples_doc, info)
        normalized = work / "normalized.onnx"
        models.normalize_model(onnx_path, normalized)
        plan, paths = slicing.write_slices(normalized, slices, work / "slices")
        if plan.count < 2:
            raise UsageError("the model's graph has no single-tensor boundary to cut at: compile it as one circuit")
        progress(f"slicing: {plan.count} slices of work {', '.join(f'{w:,}' for w in plan.works())} at "
                 f"{', '.join(c.tensor for c in plan.cuts)}")
        between = [slicing.run_chain(paths, s)[1] for s in samples]  # each cut's tensor, per sample
        floor = 0
        while True:
            try:
                manifests, ids = _compile_chain(paths, plan, samples, between, store, options, floor, progress,
                                                compile_model)
            except _TooCoarse as exc:
                floor = _finer(exc.scale, exc.error)
                progress(f"slice {exc.k + 1} is not accurate at its input scale {exc.scale}: every slice again from "
                         f"scale {DEFAULT_SCALES[floor]}")
                continue
            accuracy = _end_to_end(store, manifests, samples, normalized, work / "check", options.bound)
            progress(f"end to end on {len(samples)} sample(s): max abs error {accuracy['max_abs_error']:.4g} "
                     f"against onnxruntime (the bound: {accuracy['limit']:.4g})")
            missed = _missed(accuracy, options.task == "classification")
            if missed is None:
                break
            scale = int(json.loads(store.get(manifests[0].settings.cid))["run_args"]["input_scale"])
            floor = _finer(scale, AccuracyNotMet(
                f"the slices together miss the accuracy bound: {missed} end to end, at the finest scale searched; "
                "cut fewer slices, or loosen --max-error", **accuracy))
            progress(f"the slices' errors add up past the bound at scale {scale}: every slice again from scale "
                     f"{DEFAULT_SCALES[floor]}")
        manifest = SlicedManifest(
            name=options.name or onnx_path.stem, onnx=put_artifact(store, normalized), slices=ids,
            inputs=[TensorDoc(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in info.inputs],
            outputs=[TensorDoc(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in info.outputs],
            privacy=PrivacyProfile(options.profile.input, "fixed", "public").to_dict(),
            plan=plan.to_json(), accuracy=accuracy, ezkl_version=ezkl_calls.EZKL_VERSION,
            artifacts=sorted({*ids, *(cid for m in manifests for cid in m.public_cids)}))
        model_id = store.put_json(manifest.model_dump(mode="json"))
    return SlicedCompile(model_id, manifest, manifests)


def _missed(accuracy: dict[str, Any], classifier: bool) -> str | None:
    """What the slices together miss, in words (None: within the bound; a stated classifier keeps every class)."""
    if accuracy["max_abs_error"] > accuracy["limit"]:
        return f"max abs error {accuracy['max_abs_error']:.4g} over {accuracy['limit']:.4g}"
    if classifier and not accuracy["argmax_match"]:
        return "a sample's class differs from onnxruntime's"
    return None


def _finer(scale: int, error: AccuracyNotMet) -> int:
    """The index of the next scale of the grid finer than ``scale``; ``error`` when none is."""
    finer = [i for i, s in enumerate(DEFAULT_SCALES) if s > scale]
    if not finer:
        raise error
    return finer[0]


class _TooCoarse(Exception):
    def __init__(self, k: int, scale: int, error: AccuracyNotMet) -> None:
        super().__init__(error.message)
        self.k, self.scale, self.error = k, scale, error


def _compile_chain(paths: list[Path], plan: slicing.SlicePlan, samples: list[list[np.ndarray]],
                   between: list[list[np.ndarray]], store: LocalStore, options: Any, floor: int, progress: Progress,
                   compile_model: Any) -> tuple[list[ModelManifest], list[str]]:
    manifests: list[ModelManifest] = []
    ids: list[str] = []
    scales: tuple[int, ...] = DEFAULT_SCALES[floor:]
    last = len(paths) - 1
    for k, path in enumerate(paths):
        profile = PrivacyProfile(options.profile.input if k == 0 else "linked", "fixed",
                                 "public" if k == last else "hashed")
        if k == 0:
            doc: Any = {"inputs": [{t.name: a.tolist() for t, a in zip(_inputs(path), s, strict=True)}
                                   for s in samples]}
        else:
            name = plan.cuts[k - 1].tensor
            doc = {"inputs": [{name: b[k - 1].tolist()} for b in between]}
        given = None if options.candidates is None else [  # fresh ones per slice (a search fills them in)
            Candidate(c.decomp_base, c.decomp_legs, c.scale if k == 0 and c.scale in scales else scales[0],
                      c.num_inner_cols) for c in options.candidates]
        slice_options = dataclasses.replace(
            options, profile=profile, scales=scales, candidates=given,
            name=f"{options.name or path.stem} slice {k + 1}/{len(paths)}",
            batch_sizes=(), domain=options.domain if k == 0 else None,
            task=options.task if k == last else "regression", budget=options.budget)
        progress(f"slice {k + 1} of {len(paths)}: compiling (input scale {'/'.join(map(str, scales))})")
        try:
            result = compile_model(path, doc, store, slice_options,
                                   lambda line, k=k: progress(f"[slice {k + 1}] {line}"))
        except AccuracyNotMet as exc:
            if k == 0:
                raise
            raise _TooCoarse(k, scales[0], exc) from exc
        manifests.append(result.manifest)
        ids.append(result.model_id)
        if k < last:
            settings = json.loads(store.get(result.manifest.settings.cid))
            scales = (int(settings["model_output_scales"][0]),)
    return manifests, ids


def _inputs(path: Path) -> list[Any]:
    return list(models.load_model(path).inputs)


def _end_to_end(store: LocalStore, manifests: list[ModelManifest], samples: list[list[np.ndarray]],
                normalized: Path, work: Path, bound: AccuracyBound | None) -> dict[str, Any]:
    """The slices' witnesses in order on each sample against onnxruntime on the whole model, and the bound one
    circuit of the model would have been held to (``AccuracyBound.limit`` of the model's outputs)."""
    from proofmarket.systems.ezkl.salt import circuit_input

    worst, refs, argmax = 0.0, [], True
    work.mkdir(parents=True, exist_ok=True)

    def here(k: int, flat: list[list[float]]) -> list[list[float]]:  # the compile's own process, as the tuner
        manifest = manifests[k]
        (work / f"in-{k}.json").write_text(json.dumps({"input_data": flat}))
        witness = ezkl_calls.gen_witness(work / f"in-{k}.json", store.path(manifest.compiled.cid),
                                         work / f"witness-{k}.json")
        return ezkl_calls.decode_values(witness["outputs"], manifest.layout.output_scales,
                                        [int(np.prod(o.shape)) for o in manifest.outputs])

    for s in samples:
        salt = [0] * manifests[0].salt_elements if manifests[0].salt_elements else None
        outputs = chain_witness(len(manifests), circuit_input(s, salt), here)[-1]
        want = models.run_onnx(normalized, s)
        refs.extend(want)
        for got, ref in zip(outputs, want, strict=True):
            flat = np.asarray(ref, dtype=np.float64).ravel()
            worst = max(worst, float(np.max(np.abs(np.asarray(got) - flat))) if flat.size else 0.0)
            argmax = argmax and (flat.size < 2 or int(np.argmax(got)) == int(np.argmax(flat)))
    return {"max_abs_error": worst, "limit": (bound or AccuracyBound()).limit(refs), "argmax_match": argmax,
            "samples": len(samples)}


# --- prove ---------------------------------------------------------------------------------------------------------
def chain_witness(count: int, first: list[list[float]],
                  witness: Callable[[int, list[list[float]]], list[list[float]]]) -> list[list[list[float]]]:
    """Each slice's output values (floats at its output scales), the witnesses computed in order by ``witness(k,
    input)``: slice k's input is slice k-1's output as its circuit quantised it. Every slice's outputs (the
    intermediate ones stay with the caller)."""
    flat, outs = first, []
    for k in range(count):
        flat = witness(k, flat)
        outs.append(flat)
    return outs


def prove_sliced(store: LocalStore, model_id: str, inputs_doc: Any, provers: list[Any],
                 salt: list[int] | None = None, progress: Progress = lambda _: None) -> tuple[SlicedBundle, str]:
    """Prove a call on a sliced model: the witnesses in order, then every slice on ``provers`` (``EzklProver``s,
    each its own process) in parallel. Returns the bundle and its CID."""
    from proofmarket.systems.ezkl.salt import check_salt, circuit_input
    from proofmarket.systems.ezkl.verify import load_manifest

    sliced = load_sliced(store, model_id)
    manifests = [load_manifest(store, i) for i in sliced.slices]
    salt = check_salt(manifests[0].salt_elements, salt, required=False)
    flat = circuit_input(models.parse_flat(inputs_doc, manifests[0].input_signature()), salt)
    chain = provers[0]  # the witnesses in a prover's process, as every EZKL call of the node
    outs = chain_witness(len(manifests), flat, lambda k, x: chain.witness_outputs(sliced.slices[k], x))
    firsts = [inputs_doc, *({"input_data": o} for o in outs[:-1])]
    progress(f"proving {len(manifests)} slices on {len(provers)} prover(s)")

    free: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for prover in provers:
        free.put(prover)

    def one(k: int) -> ProofBundle:
        prover = free.get()  # one proof at a time on each prover (its own process)
        try:
            proved: ProofBundle = prover.prove(sliced.slices[k], firsts[k], salt=salt if k == 0 else None).bundle
            return proved
        finally:
            free.put(prover)

    with ThreadPoolExecutor(max_workers=len(provers)) as pool:
        bundles = list(pool.map(one, range(len(manifests))))
    docs = [b.to_doc() for b in bundles]
    bundle = SlicedBundle(model=SlicedRef(id=model_id, name=sliced.name), input=bundles[0].input,
                          output=bundles[-1].output, slices=docs, proof=evm_proof(docs))
    return bundle, store.put_json(bundle.to_doc())


def evm_proof(slices: list[dict[str, Any]]) -> SlicedProof:
    """The chain's form of a call's slices (``chain/sliced_verifier.py``)."""
    from eth_abi.abi import encode

    from proofmarket.chain.sliced_verifier import evm_args

    proof, instances = evm_args({"slices": slices})
    calldata = bytes.fromhex(VERIFY_PROOF_SELECTOR) + encode(["bytes", "uint256[]"], [proof, instances])
    return SlicedProof(hex="0x" + proof.hex(), instances=[hex(i) for i in instances],
                       evm_calldata="0x" + calldata.hex())


# --- verify --------------------------------------------------------------------------------------------------------
def verify_sliced(doc: dict[str, Any] | SlicedBundle, store: ArtifactStore) -> VerifyReport:
    """Every slice's proof, every link, and the call's input and output (the module says what each binds)."""
    from proofmarket.systems.ezkl.verify import own_instances, verify_bundle

    try:
        bundle = doc if isinstance(doc, SlicedBundle) else SlicedBundle.model_validate(doc)
    except ValueError as exc:
        raise BundleError(f"not a sliced proof bundle ({str(exc).splitlines()[0]})") from exc
    sliced = load_sliced(store, bundle.model.id)
    if len(bundle.slices) != len(sliced.slices):
        raise VerificationFailed(f"the model has {len(sliced.slices)} slices; the bundle proves {len(bundle.slices)}")
    parts = [ProofBundle.parse(s) for s in bundle.slices]
    for k, (part, want) in enumerate(zip(parts, sliced.slices, strict=True)):
        if part.model.id != want:
            raise VerificationFailed(f"slice {k + 1}'s proof is not of the model's slice {k + 1}")
        verify_bundle(part, store)
    from proofmarket.systems.ezkl.felts import parse_uint_hex

    own = [own_instances(p, [parse_uint_hex(i) for i in p.proof.instances]) for p in parts]
    for k in range(len(parts) - 1):
        if own[k].outputs != own[k + 1].inputs:
            raise VerificationFailed(f"the link between slices {k + 1} and {k + 2} is broken: slice {k + 2}'s input "
                                     f"is not slice {k + 1}'s output")
    if bundle.input != parts[0].input:
        raise VerificationFailed("the call's input is not the first slice's")
    if bundle.output != parts[-1].output:
        raise VerificationFailed("the call's output is not the last slice's")
    if bundle.proof != evm_proof(bundle.slices):
        raise VerificationFailed("the bundle's on-chain proof is not its slices' (proof, instances or calldata)")
    from proofmarket.store.cid import digest_of
    from proofmarket.systems.ezkl.srs import srs_kind

    kinds = {srs_kind(digest_of(p.model.srs.cid).hex()) for p in parts}
    checks = [f"each of the {len(parts)} slices' proofs verifies against the model's slice",
              f"the {len(parts) - 1} links hold: each slice's input hash is the previous slice's output hash",
              "the call's input is the first slice's, its output the last slice's",
              "its on-chain proof (SlicedVerifier's proof, instances and calldata) is its slices'"]
    if bundle.receipt is not None:
        from proofmarket.systems.receipts import check_receipt

        checks.append(check_receipt(bundle))
    return VerifyReport(True, bundle.model.id, bundle.output.values,
                        kinds.pop() if len(kinds) == 1 else "mixed", checks)


# --- the dry run ---------------------------------------------------------------------------------------------------
def predict_sliced(onnx_path: Path, profile: PrivacyProfile, slices: int, provers: int = 1) -> dict[str, Any]:
    """``compile --slices N --dry-run``: the plan and each slice's cost from its graph alone (``graph_floor``: no
    calibration, seconds), and a call's proof wall time on ``provers`` provers (the slices' proofs scheduled longest
    first on the least loaded prover)."""
    from proofmarket.systems.ezkl.predict import graph_floor

    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        onnx_path = self_contained(onnx_path, work / "model", models.MAX_MODEL_BYTES)
        models.load_model(onnx_path)  # the model's checks first: an unsupported operator is named here
        normalized = work / "normalized.onnx"
        models.normalize_model(onnx_path, normalized)
        plan, paths = slicing.write_slices(normalized, slices, work / "slices")
        last = len(paths) - 1
        rows = []
        for k, path in enumerate(paths):
            floor = graph_floor(path, input_visibility=profile.input if k == 0 else "linked",
                                param_visibility="fixed", output_visibility="public" if k == last else "hashed")
            rows.append({"slice": k + 1, "work": plan.works()[k], "logrows": floor.logrows,
                         "prove_s": round(floor.prove_s, 2), "pk_mb": round(floor.pk_mb, 1),
                         "peak_rss_mb": round(floor.peak_rss_mb, 1)})
    loads = [0.0] * max(1, provers)
    for row in sorted(rows, key=lambda r: -float(r["prove_s"])):
        loads[loads.index(min(loads))] += float(row["prove_s"])
    return {"plan": plan.to_json(), "slices": rows, "provers": max(1, provers), "wall_s": round(max(loads), 2),
            "serial_s": round(sum(float(r["prove_s"]) for r in rows), 2),
            "basis": "each slice's rows from its graph alone at EZKL's default scale (not calibrated): a lower bound"}
