"""Compile an owner's ONNX model into a complete, content-addressed set of proving artifacts.

    ONNX + samples -> validate -> normalise (batch 1) -> [salt] -> settings search -> SRS -> keys
      -> self-check proof -> Solidity verifier (solcjs) -> store every artifact -> manifest (= model id)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx

from proofmarket import models
from proofmarket.core.errors import (
    CircuitCompileError,
    HomeNotWritable,
    ModelOverBudget,
    ProofMarketError,
    UsageError,
)
from proofmarket.models.domain import (
    DEFAULT_MARGIN,
    input_domain,
    point_arrays,
)
from proofmarket.models.external import self_contained
from proofmarket.models.fitting import fit_to_data
from proofmarket.store import LocalStore
from proofmarket.systems.documents import put_artifact
from proofmarket.systems.ezkl import ezkl_calls, shared_verifier, solidity
from proofmarket.systems.ezkl.batch_compile import Accuracy, compile_batches
from proofmarket.systems.ezkl.batching import BATCHABLE_PROFILES
from proofmarket.systems.ezkl.evm_check import LocalEvm
from proofmarket.systems.ezkl.grid import SEARCHES
from proofmarket.systems.ezkl.manifest import InstanceLayout, ModelManifest, SrsRef, TensorDoc
from proofmarket.systems.ezkl.on_chain import fall_back, first_on_chain
from proofmarket.systems.ezkl.predict import Budget, Prediction, from_settings, graph_floor, predict
from proofmarket.systems.ezkl.profile import SALT_BITS, SALT_ELEMENTS, PrivacyProfile
from proofmarket.systems.ezkl.salt import circuit_input, salt_model
from proofmarket.systems.ezkl.srs import SrsInfo, SrsProvider
from proofmarket.systems.ezkl.tuning import (
    DEFAULT_SCALES,
    AccuracyBound,
    Candidate,
    Objective,
    TuningJob,
    TuningReport,
    likely_pick,
    search,
    settle,
)

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
T = TypeVar("T")
MAX_SAMPLES = 64


@dataclass
class CompileResult:
    model_id: str
    manifest: ModelManifest
    report: TuningReport  # report.measurements(): the measured times, which the manifest (the id) leaves out


@dataclass
class CompileOptions:
    profile: PrivacyProfile
    srs: SrsProvider
    bound: AccuracyBound | None = None
    candidates: list[Candidate] | None = None
    name: str | None = None
    timed: int = 2  # a thorough search times at least this many circuit shapes (a quick one times its pick alone)
    search: str = "quick"  # quick | thorough (grid.py): what the settings search tries and times
    budget: Budget | None = None  # refuse before tuning when the prediction is over it
    objective: Objective | None = None  # what the tuner minimises (default: balanced)
    batch_sizes: tuple[int, ...] = ()  # batch circuits to build beside the model's own (public profile only)
    task: str | None = None  # "classification" | "regression" as the owner states it; None: from evidence only
    domain: str | None = None  # the owner's input domain (models/domain.stated: LOW:HIGH or JSON); None: the samples'
    domain_margin: float = DEFAULT_MARGIN  # a domain from the samples: their range widened by this on each side
    unvaried_width: float | None = None  # ... one they never vary by margin x this (None: max(1, |v|); domain.py)
    scales: tuple[int, ...] | None = None  # the input scales the search may use (None: the default grid's)
    # a verifier over EIP-170's size is served on chain by a SharedVerifier clone (a slice's): no other candidate is
    # timed for a smaller one (a key setup and a proof each), only for one EZKL's verifier refuses
    oversize_verifier_ok: bool = False
    min_logrows: int | None = None  # lay the circuit out on at least this many logrows (a sliced model's slices)


def compile_model(
    onnx_path: Path, samples_doc: Any, store: LocalStore, options: CompileOptions,
    progress: Progress = lambda _: None,
) -> CompileResult:
    """Compile a model; every failure is a ProofMarketError with a stable code. An exception no step names (a
    model this code did not foresee) becomes ``circuit_compile`` with its type and message, its traceback logged:
    a refusal of that model, never a crash of the caller."""
    return _guarded(onnx_path, lambda path: _compile(path, samples_doc, store, options, progress))


def settle_model(onnx_path: Path, samples_doc: Any, store: LocalStore, options: CompileOptions,
                 progress: Progress = lambda _: None, keep: Path | None = None) -> tuple[Candidate, dict[str, Any]]:
    """The candidate a compile's search would time and pick, and its settings (EZKL's), without a key setup or a
    proof (a sliced compile settles every slice first: ``sliced_compile.py``); its refusals are the compile's.
    ``keep``: where its compiled circuit is copied (a witness needs no keys)."""
    def settled(path: Path) -> tuple[Candidate, dict[str, Any]]:
        with tempfile.TemporaryDirectory(prefix="proofmarket-settle-") as tmp:
            best = settle(_prepared(path, samples_doc, store, options, progress, Path(tmp)).job, options.candidates,
                          progress)[1][0]
            assert best.settings_path is not None and best.compiled_path is not None
            if keep is not None:
                shutil.copyfile(best.compiled_path, keep)
            return (Candidate(best.decomp_base, best.decomp_legs, best.scale, best.num_inner_cols),
                    dict(json.loads(best.settings_path.read_text())))
    return _guarded(onnx_path, settled)


def _guarded(onnx_path: Path, run: Callable[[Path], T]) -> T:
    """``run`` on the model made one file (its weights beside it read in), its unforeseen failures refused."""
    try:
        with tempfile.TemporaryDirectory(prefix="proofmarket-model-") as tmp:  # weights beside it: one file
            return run(self_contained(onnx_path, Path(tmp), models.MAX_MODEL_BYTES))
    except ProofMarketError:
        raise
    except PermissionError as exc:  # a folder of the data folder this user cannot write: not the model's fault
        raise HomeNotWritable(f"the compile cannot write {exc.filename} ({exc.strerror}): give this user the data "
                              "folder (PROOFMARKET_HOME), or set it to one the user owns",
                              path=str(exc.filename)) from exc
    except Exception as exc:
        log.exception("compile of %s failed unexpectedly", onnx_path.name)
        detail = " ".join(str(exc).split())[:300]
        raise CircuitCompileError(f"the compiler cannot handle this model ({type(exc).__name__}: {detail}); "
                                  "the node's log has the details") from exc


@dataclass
class _Prepared:
    """A compile up to its settings search: the model checked, its domain, the circuit's ONNX and the search."""
    info: models.ModelInfo
    samples: list[list[np.ndarray]]
    domain: Any
    circuit_onnx: Path
    reference: list[list[np.ndarray]]
    bound: AccuracyBound
    job: TuningJob
    prediction: Prediction
    per_candidate: float


def _prepared(onnx_path: Path, samples_doc: Any, store: LocalStore, options: CompileOptions, progress: Progress,
              work: Path) -> _Prepared:
    if options.search not in SEARCHES:
        raise UsageError(f"--search is one of {', '.join(SEARCHES)}, not {options.search!r}")
    progress("checking the ONNX model")
    info = models.load_model(onnx_path)
    for note in info.notes:  # what the check rewrote (scikit-learn operators lowered, a ZipMap served as a tensor)
        progress(f"rewritten: {note}")
    samples = models.parse_samples(samples_doc, info)
    if not samples:
        raise UsageError("the samples file holds no sample input: give at least one")
    if len(samples) > MAX_SAMPLES:
        raise UsageError(f"give at most {MAX_SAMPLES} samples for tuning, not {len(samples)}")
    domain = input_domain(info, samples, options.domain, options.domain_margin, progress, options.unvaried_width)
    covering = point_arrays(domain, info.inputs)
    circuit_onnx = circuit_model(onnx_path, work, options.profile, samples + covering, progress)
    flat = [calibration_flat_input(s, options.profile) for s in samples]
    reference = [models.run_onnx(work / "normalized.onnx", s) for s in samples]
    points = [calibration_flat_input(p, options.profile) for p in covering]  # as the tuner calibrates (salted)
    classifier, said = task_of(options.task, info)
    progress(said)
    bound = dataclasses.replace(options.bound or AccuracyBound(), classifier=classifier)
    progress("predicting the circuit's cost (the settings compile most likely picks, checked on the samples)")
    known: dict[str, Candidate] = {}
    quick = options.search == "quick"
    prediction, per_candidate = _predicted(circuit_onnx, flat, reference, options.profile, work, bound, known,
                                           likely=options.candidates is None, domain_points=points,
                                           quick=quick, budget=options.budget, scales=options.scales)
    progress(prediction.summary())
    if options.min_logrows is not None:  # the prediction's circuits are laid out on their own logrows
        known.clear()
    if options.budget is not None:
        options.budget.check(prediction)
    if prediction.pk_mb * 1e6 > store.max_size:  # refused now, not after the key setup (LeNet-5: 28 minutes)
        raise ModelOverBudget(
            f"its proving key is predicted at ~{prediction.pk_mb:,.0f} MB (measured keys run up to 3x the "
            f"prediction), over the artifact store's limit of {store.max_size:,} bytes: as one circuit it "
            "cannot be stored; split it into slices (compile --slices), make it smaller, or raise "
            "PROOFMARKET_MAX_ARTIFACT_BYTES where memory allows", prediction=prediction.to_dict(),
            over=[f"proving key ~{prediction.pk_mb:,.0f} MB > {store.max_size / 1e6:,.0f} MB"], slices=max(
                2, math.ceil(prediction.pk_mb * 1e6 / store.max_size)))
    job = TuningJob(circuit_onnx, flat, reference, options.profile, work, options.srs, bound,
                    timed=1 if quick else options.timed, objective=options.objective or Objective(), known=known,
                    expect_logrows=prediction.logrows, domain_points=points, quick=quick,
                    scales=options.scales or DEFAULT_SCALES, min_logrows=options.min_logrows)
    return _Prepared(info, samples, domain, circuit_onnx, reference, bound, job, prediction, per_candidate)


def _compile(
    onnx_path: Path, samples_doc: Any, store: LocalStore, options: CompileOptions, progress: Progress,
) -> CompileResult:
    with tempfile.TemporaryDirectory(prefix="proofmarket-compile-") as tmp:
        work = Path(tmp)
        ready = _prepared(onnx_path, samples_doc, store, options, progress, work)
        info, samples, domain, circuit_onnx, reference, bound, job, prediction, per_candidate, quick = (
            ready.info, ready.samples, ready.domain, ready.circuit_onnx, ready.reference, ready.bound, ready.job,
            ready.prediction, ready.per_candidate, ready.job.quick)
        flat, classifier = job.samples, bound.classifier
        count = len(options.candidates) if options.candidates is not None else TYPICAL_GRID
        timing = ("then the cheapest's key setup and one proof" if quick
                  else "then key setups and timed proofs of the cheapest")
        progress(f"searching circuit settings ({options.search}; objective: {job.objective.name}; about "
                 f"{_seconds(count * per_candidate + (1 if quick else 3) * (prediction.prove_s + prediction.setup_s))}"
                 f": ~{count} candidates of ~{per_candidate:.1f} s, {timing})")
        with LocalEvm() as evm:
            evm.prestart()  # anvil starts while the search runs
            report = search(job, options.candidates, progress)
            checked: dict[str, solidity.BuiltVerifier] = {}
            def refusal(cand: Candidate) -> str | None:  # its own verifier over EIP-170: can a clone serve it?
                assert cand.keys and cand.settings_path and cand.proof_path and cand.logrows
                return shared_verifier.refusal(work / f"shared-{cand.label}", cand.keys[0], cand.settings_path,
                                               options.srs.get(cand.logrows).path, cand.proof_path, evm)

            first_on_chain(report, job.objective, options.srs, work, evm, progress, checked,
                           options.oversize_verifier_ok, refusal)
            picked, built = fall_back(job, report, checked, work, evm, progress,
                                      oversize_ok=options.oversize_verifier_ok, shared_refusal=refusal)
            assert picked.settings_path and picked.compiled_path and picked.logrows and picked.keys
            srs = options.srs.get(picked.logrows)
            vk, pk = picked.keys  # set up while timing: the same circuit and SRS give the same keys
            progress("self-check: the timed proof verifies with the keys")
            layout = _probe_layout(picked, vk, srs, flat[0], info, options.profile)
            verifier = built.store(store)
            assert picked.proof_path is not None
            shared = shared_verifier.build(work / "shared-verifier", vk, picked.settings_path, srs.path,
                                           picked.proof_path, evm, store, picked.evm_gas, progress)
            batches = []
            if options.batch_sizes and options.profile.name in BATCHABLE_PROFILES:
                accuracy = Accuracy(reference, report.error_limit, bound.classifier)
                batches = compile_batches(circuit_onnx, picked.settings_path, flat, options.batch_sizes, accuracy,
                                          options.srs, store, work, evm, progress,
                                          per_call_s=(picked.prove_s or 0.0) + (picked.setup_s or 0.0))
        progress("storing artifacts")
        manifest = ModelManifest(
            name=options.name or onnx_path.stem,
            onnx=put_artifact(store, onnx_path),
            circuit_onnx=put_artifact(store, circuit_onnx),
            inputs=[TensorDoc(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in info.inputs],
            outputs=[TensorDoc(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in info.outputs],
            is_classifier=classifier,  # the task checked: the owner's word, else evidence
            privacy=options.profile.to_dict(),
            salt_elements=SALT_ELEMENTS if options.profile.salted else 0,
            settings=put_artifact(store, picked.settings_path),
            compiled=put_artifact(store, picked.compiled_path),
            vk=put_artifact(store, vk),
            pk=put_artifact(store, pk),
            srs=SrsRef(**put_artifact(store, srs.path).model_dump(), kind=srs.kind, logrows=srs.logrows),
            verifier=verifier,
            shared_verifier=shared,
            layout=layout,
            logrows=picked.logrows,
            tuning=report.to_dict(),
            accuracy={"max_abs_error": picked.max_abs_error, "limit": report.error_limit,
                      "argmax_match": picked.argmax_match, "samples": len(samples)},
            ezkl_version=ezkl_calls.EZKL_VERSION,
            batches=batches,
            input_domain=domain.to_json(),
        )
        model_id = store.put_json(manifest.model_dump(mode="json"))
    return CompileResult(model_id, manifest, report)


def _predicted(circuit_onnx: Path, flat: list[list[list[float]]], reference: list[list[np.ndarray]],
               profile: PrivacyProfile, work: Path, bound: AccuracyBound,
               known: dict[str, Candidate], likely: bool = True, max_input: float | None = None,
               domain_points: list[list[list[float]]] | None = None, quick: bool = True, first_only: bool = False,
               only: Candidate | None = None, budget: Budget | None = None,
               scales: tuple[int, ...] | None = None,
               calibrate_up_to: int | None = None) -> tuple[Prediction, float]:
    """The cost of the circuit compile most likely picks (``tuning.likely_pick``: the first settings accurate on the
    samples; those candidates go into ``known`` for the search to reuse), else of the closest of them (nothing
    accurate: the search then ends in ``accuracy_not_met`` naming it), else of the calibration alone (``predict``: a
    compile given its own candidates, ``likely`` False, or none calibrated).
    Also the seconds one candidate took. With a ``budget``: a model whose graph alone is over it (``graph_floor``)
    is answered from the graph, in seconds, with no calibration; so is one whose graph alone needs more than
    ``calibrate_up_to`` logrows (the dry run: calibrating such a model takes minutes)."""
    started = time.perf_counter()
    if budget is not None or calibrate_up_to is not None:
        floor = graph_floor(circuit_onnx, input_visibility=profile.input, param_visibility=profile.params,
                            max_input=max_input, output_visibility=profile.output)
        try:
            if budget is not None:
                budget.check(floor)
        except ModelOverBudget:
            return floor, time.perf_counter() - started
        if calibrate_up_to is not None and floor.logrows > calibrate_up_to:
            return dataclasses.replace(floor, sized_by=(
                f"from the graph alone, not calibrated (a circuit over 2^{calibrate_up_to} rows takes minutes to "
                "calibrate): a lower bound; compile calibrates and prints its prediction first, before any key "
                "setup")), time.perf_counter() - started
    job = TuningJob(circuit_onnx, flat, reference, profile, work, SrsProvider(work / "no-srs"), bound, known=known,
                    domain_points=domain_points or [], quick=quick, scales=scales or DEFAULT_SCALES)
    try:
        picked = likely_pick(job, first_only=first_only, only=only) if likely else None
    except ProofMarketError:
        picked = None
    tried = max(1, len(known))
    if picked is None:  # nothing accurate on the samples: the closest circuit calibrated sizes it (the search then
        # names it and by how much it missed; a fresh calibration may fail where they did not)
        picked = min((c for c in known.values() if c.settings_path is not None and c.settings_path.is_file()),
                     key=lambda c: (c.max_abs_error if c.max_abs_error is not None else math.inf, -(c.logrows or 0)),
                     default=None)
    if picked is not None and picked.settings_path is not None:
        return (from_settings(json.loads(picked.settings_path.read_text()), max_input),
                (time.perf_counter() - started) / tried)
    estimate = predict(circuit_onnx, flat + (domain_points or []), input_visibility=profile.input,
                       param_visibility=profile.params, max_input=max_input, output_visibility=profile.output)
    return estimate, (time.perf_counter() - started) / (tried + 1)


TASKS = ("classification", "regression")
TYPICAL_GRID = 7  # candidates the default grid calibrates on most models (of its ~20: tuning._default_grid)


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def task_of(task: str | None, info: models.ModelInfo) -> tuple[bool, str]:
    """Whether the class (argmax) of each sample is checked, and why, in words: the owner's word, else evidence only
    (a Softmax, LogSoftmax or ArgMax at the end, or one probability from a Sigmoid)."""
    if task is not None:
        if task not in TASKS:
            raise UsageError(f"the task is classification or regression, not {task!r}")
        return task == "classification", f"task: {task} (stated)"
    if info.is_classifier:
        return True, (f"task: classification (inferred: {info.classifier_evidence or 'a class output'}); state "
                      "--task regression to check the error only")
    return False, ("task: regression checks (nothing at the output says classifier; state --task classification to "
                   "also check each sample's class)")


def circuit_model(onnx_path: Path, work: Path, profile: PrivacyProfile, points: Sequence[Sequence[np.ndarray]] = (),
                  progress: Progress = lambda _: None) -> Path:
    """The ONNX that becomes the circuit: normalised to batch 1 (``work/normalized.onnx``, also the onnxruntime
    reference; fitted to ``points``: masks and LayerNorm inputs, ``models/fitting.py``), then wrapped to take a
    salt for a hashed input (``work/salted.onnx``)."""
    normalized = work / "normalized.onnx"
    models.normalize_model(onnx_path, normalized)
    for note in fit_to_data(normalized, points):  # attention masks, LayerNorm inputs (models/fitting.py)
        progress(f"rewritten: {note}")
    if not profile.salted:
        return normalized
    salted = work / "salted.onnx"
    onnx.save(salt_model(onnx.load(str(normalized))), str(salted))
    return salted


def calibration_flat_input(sample: list[np.ndarray], profile: PrivacyProfile) -> list[list[float]]:
    """A sample as the tuner sees it: a hashed input gets the largest salt (every element 2^SALT_BITS - 1), not a
    random one: calibration then covers any salt a consumer sends, and the same samples give the same circuit."""
    return circuit_input(sample, [(1 << SALT_BITS) - 1] * SALT_ELEMENTS if profile.salted else None)


def _probe_layout(picked: Candidate, vk: Path, srs: SrsInfo, sample: list[list[float]], info: models.ModelInfo,
                  profile: PrivacyProfile) -> InstanceLayout:
    """Verify the proof the tuner timed with these keys (pk, vk and SRS fit together) and read the instance layout
    from it: no second proof."""
    assert picked.compiled_path and picked.settings_path and picked.proof_path
    ezkl_calls.verify(picked.proof_path, picked.settings_path, vk, srs.path)
    proof = json.loads(picked.proof_path.read_text())
    settings = json.loads(picked.settings_path.read_text())
    total = len(proof["instances"][0])
    # a slice's committed input or output is a commitment in the proof, not an instance
    n_out = 0 if profile.output == "committed" else sum(t.size for t in info.outputs)
    n_in = {"public": sum(len(x) for x in sample), "committed": 0}.get(profile.input, len(info.inputs))
    return InstanceLayout(input=n_in, params=total - n_in - n_out, output=n_out,
                          output_scales=list(settings["model_output_scales"]))


