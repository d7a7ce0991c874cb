"""Compiling a sliced model (``sliced.py`` says what one is): the graph cut (``models/slicing.py``), each slice
compiled by the one compiler at the scale its input arrives at, the slices held together to the model's accuracy
bound; and the dry run of ``compile --slices N`` (each slice's cost from its graph, a call's wall time)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from proofmarket import models
from proofmarket.core.budget import Budget
from proofmarket.core.errors import AccuracyNotMet, BundleError, CircuitCompileError, ModelOverBudget, UsageError
from proofmarket.models import slicing
from proofmarket.models.domain import input_domain, point_arrays
from proofmarket.models.external import self_contained
from proofmarket.models.fitting import fit_to_data
from proofmarket.store import LocalStore
from proofmarket.systems.documents import put_artifact
from proofmarket.systems.ezkl import ezkl_calls, slice_costs
from proofmarket.systems.ezkl.candidates import DEFAULT_COLUMNS, DEFAULT_SCALES, AccuracyBound, Candidate
from proofmarket.systems.ezkl.manifest import ModelManifest, TensorDoc
from proofmarket.systems.ezkl.profile import COMMITTED, PrivacyProfile
from proofmarket.systems.ezkl.sliced import Progress, SlicedManifest, chain_witness, check_links, handoff_scales


@dataclasses.dataclass
class SlicedCompile:
    model_id: str
    manifest: SlicedManifest
    slices: list[ModelManifest]


# --- compile ------------------------------------------------------------------------------------------------------
def compile_sliced(onnx_path: Path, samples_doc: Any, store: LocalStore, options: Any, slices: int | None,
                   progress: Progress = lambda _: None) -> SlicedCompile:
    """Compile the model at ``onnx_path`` as ``slices`` linked slices (fewer when its graph has fewer cuts; None: the
    fewest that fit ``options.budget``, ``slice_costs.planned``) with the one compiler; ``options``: the model's
    ``CompileOptions`` (its profile is the call's input's)."""
    from proofmarket.systems.ezkl.compiler import compile_model, settle_model

    if options.profile.params != "fixed":
        raise UsageError("a sliced model keeps its weights in its keys (params=fixed): hashed weights are for one "
                         "circuit")
    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        info, normalized = _normalized(onnx_path, work)
        samples = models.parse_samples(samples_doc, info)
        # the samples and points covering the first slice's input domain: the whole model's masks are fitted on them
        # before it is cut, and the later slices calibrated on what they carry between the slices (an input inside
        # the domain can take a tensor between slices past the samples')
        reach = samples + _domain_points(info, samples, options)
        for note in fit_to_data(normalized, reach):
            progress(f"rewritten: {note}")
        plan = slice_costs.planned(onnx.load(str(normalized)), slices, options.budget, work / "costs", progress)
        paths = slicing.write_slices(normalized, plan, work / "slices")[1]
        if plan.count < 2:
            raise UsageError(f"the model's graph has no place where at most {slicing.MAX_WIDTH} tensors cross to cut "
                             "at: compile it as one circuit")
        progress(f"slicing: {plan.count} slices of work {', '.join(f'{w:,}' for w in plan.works())} at "
                 f"{', '.join('+'.join(c.tensors) for c in plan.cuts)}")
        between = [slicing.run_chain(paths, s)[1] for s in reach[:MAX_CALIBRATION]]
        floor = 0
        while True:
            try:
                manifests, ids = _compile_chain(paths, plan, samples, between, store, options, floor, progress,
                                                compile_model, settle_model)
            except _TooCoarse as exc:
                floor = _finer(exc.scale, exc.error)
                progress(f"slice {exc.k + 1} is not accurate at its input scale {exc.scale}: every slice again from "
                         f"scale {DEFAULT_SCALES[floor]}")
                continue
            accuracy = _end_to_end(store, manifests, ids, samples, normalized, work / "check", options.bound)
            progress(f"end to end on {len(samples)} sample(s): max abs error {accuracy['max_abs_error']:.4g} "
                     f"against onnxruntime (the bound: {accuracy['limit']:.4g})")
            missed = _missed(accuracy, options.task == "classification")
            if missed is None:
                break
            scale = int(json.loads(store.get(manifests[0].settings.cid))["run_args"]["input_scale"])
            floor = _finer(scale, AccuracyNotMet(
                f"the slices together miss the accuracy bound: {missed} end to end, at the finest scale searched; "
                "cut fewer slices, or loosen --max-error", **accuracy), accuracy["max_abs_error"] / accuracy["limit"])
            progress(f"the slices' errors add up past the bound at scale {scale}: every slice again from scale "
                     f"{DEFAULT_SCALES[floor]}")
        _say_off_chain(manifests, progress)
        manifest = SlicedManifest(
            name=options.name or onnx_path.stem, onnx=put_artifact(store, normalized), slices=ids,
            links=[len(cut.tensors) for cut in plan.cuts],
            inputs=[TensorDoc(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in info.inputs],
            outputs=[TensorDoc(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in info.outputs],
            privacy=PrivacyProfile(options.profile.input, "fixed", "public").to_dict(),
            plan=plan.to_json(), accuracy=accuracy, ezkl_version=ezkl_calls.EZKL_VERSION,
            artifacts=sorted({*ids, *(cid for m in manifests for cid in m.public_cids)}))
        try:  # every tensor between two slices is committed on both sides (what every verifier compares)
            check_links(manifest, [json.loads(store.get(m.settings.cid)) for m in manifests])
        except BundleError as exc:
            raise CircuitCompileError(f"the slices' circuits do not commit to their links: {exc.message}") from exc
        model_id = store.put_json(manifest.model_dump(mode="json"))
    return SlicedCompile(model_id, manifest, manifests)


def _say_off_chain(manifests: list[ModelManifest], progress: Progress) -> None:
    """Say which slices no verifier serves on chain (their own over EIP-170's size, no shared one): the model is
    then sold over x402 only (``model register`` refuses it, naming the slice, before deploying anything)."""
    from proofmarket.systems.ezkl.solidity import EIP170_MAX_CODE

    off = [k + 1 for k, m in enumerate(manifests) if m.shared_verifier is None and
           (m.verifier is None or m.verifier.deployed_size > EIP170_MAX_CODE)]
    if off:
        progress(f"warning: slice(s) {', '.join(map(str, off))} have no verifier the chain can run (their own over "
                 "EIP-170's size and no shared verifier): the model is verified off chain (x402) only; compile it "
                 "again with another --slices to list it for escrow")


def _normalized(onnx_path: Path, work: Path) -> tuple[Any, Path]:
    """The model with its weights beside it made one file, checked (an unsupported operator is named here), and
    normalised to batch 1 at ``work/normalized.onnx``: what every plan cuts."""
    onnx_path = self_contained(onnx_path, work / "model", models.MAX_MODEL_BYTES)
    info = models.load_model(onnx_path)
    normalized = work / "normalized.onnx"
    models.normalize_model(onnx_path, normalized)
    return info, normalized


def _missed(accuracy: dict[str, Any], classifier: bool) -> str | None:
    """What the slices together miss, in words (None: within the bound; a stated classifier keeps every class)."""
    if accuracy["max_abs_error"] > accuracy["limit"]:
        return f"max abs error {accuracy['max_abs_error']:.4g} over {accuracy['limit']:.4g}"
    if classifier and not accuracy["argmax_match"]:
        return "a sample's class differs from onnxruntime's"
    return None


MAX_CALIBRATION = 64  # samples a slice after the first is calibrated on (the compiler's MAX_SAMPLES)


def _domain_points(info: Any, samples: list[list[np.ndarray]], options: Any) -> list[list[np.ndarray]]:
    """Points covering the model's input domain (the owner's, else the samples' widened: the compiler's), as
    arrays."""
    return point_arrays(input_domain(info, samples, options.domain, options.domain_margin, lambda _: None),
                        info.inputs)


def _finer(scale: int, error: AccuracyNotMet, over: float = 1.0) -> int:
    """The index of the coarsest scale of the grid finer than ``scale`` by enough bits for an error ``over`` times
    its bound (rounding halves per bit; half again to spare: every slice is compiled again), else the finest;
    ``error`` when no scale is finer."""
    finer = [i for i, s in enumerate(DEFAULT_SCALES) if s > scale]
    if not finer:
        raise error
    return next((i for i in finer if 2.0 ** (DEFAULT_SCALES[i] - scale) >= 1.5 * over), finer[-1])


class _TooCoarse(Exception):
    def __init__(self, k: int, scale: int, error: AccuracyNotMet) -> None:
        super().__init__(error.message)
        self.k, self.scale, self.error = k, scale, error


def _compile_chain(paths: list[Path], plan: slicing.SlicePlan, samples: list[list[np.ndarray]],
                   between: list[list[list[np.ndarray]]], store: LocalStore, options: Any, floor: int,
                   progress: Progress, compile_model: Any, settle_model: Any) -> tuple[list[ModelManifest], list[str]]:
    """Every slice compiled in order, each at the scale its input arrives at (the coarsest of its inputs', the finer
    ones multiplied back inside it: ``slicing.read_at``), all on one logrows (a committed link is a KZG commitment
    over the circuit's domain: the same on both sides only on the same domain).

    First every slice's search is settled without a key setup (``settle_model``): a slice not accurate at the scale
    its input arrives at then costs no key setup or proof of the slices before it, and the tallest slice's logrows
    is known before any is laid out. Then each is compiled on that logrows, from the circuit it settled on (a quick
    search: its decomposition and scale, at 1, 2 or 4 columns); a slice that still comes out taller is followed by
    the others, laid out again."""
    manifests: list[ModelManifest] = []
    ids: list[str] = []
    last = len(paths) - 1
    used = list(paths)  # slice k's model as compiled: its input shifted where its tensors arrive at mixed scales
    shifts: list[list[int]] = [[0] * len(b) for b in between[0]] if between else []

    def one(k: int, scales: tuple[int, ...], min_logrows: int | None, given: list[Candidate] | None = None,
            settling: bool = False) -> Any:
        profile = PrivacyProfile(options.profile.input if k == 0 else COMMITTED, "fixed",
                                 "public" if k == last else COMMITTED)
        if k == 0:
            doc: Any = {"inputs": [{t.name: a.tolist() for t, a in zip(_inputs(paths[k]), s, strict=True)}
                                   for s in samples]}
        else:
            names, up = [t.name for t in _inputs(used[k])], shifts[k - 1]  # as slice k-1's felts read at one scale
            doc = {"inputs": [{n: (a * 2.0 ** u).tolist() for n, a, u in zip(names, b[k - 1], up, strict=True)}
                              for b in between]}
        given = given or (None if options.candidates is None else [  # fresh ones per slice (a search fills them in)
            Candidate(c.decomp_base, c.decomp_legs, c.scale if k == 0 and c.scale in scales else scales[0],
                      c.num_inner_cols) for c in options.candidates])
        slice_options = dataclasses.replace(
            options, profile=profile, scales=scales, candidates=given,
            name=f"{options.name or paths[k].stem} slice {k + 1}/{len(paths)}",
            # a later slice's inputs are computed over the first's domain: one that never varies is the graph's
            # constant (an attention mask's -100), widened by the margin alone
            batch_sizes=(), domain=options.domain if k == 0 else None, unvaried_width=None if k == 0 else 1.0,
            task=options.task if k == last else "regression", budget=options.budget, oversize_verifier_ok=True,
            min_logrows=min_logrows)
        try:
            return (settle_model if settling else compile_model)(
                used[k], doc, store, slice_options, lambda line, k=k: progress(f"[slice {k + 1}] {line}"))
        except AccuracyNotMet as exc:
            if k == 0:
                raise
            raise _TooCoarse(k, scales[0], exc) from exc
        except ModelOverBudget as exc:  # this slice alone is over: more, smaller slices may fit
            raise ModelOverBudget(f"slice {k + 1} of {len(paths)} (work {plan.works()[k]:,} of "
                                  f"{plan.total_work:,}) is over: {exc.message}; cut it finer (--slices "
                                  f"{len(paths) + 1} or more, or --slices auto, where the graph has places to cut)",
                                  **exc.details) from exc

    def walk(step: Any) -> None:
        """``step(k, scales)`` for every slice in order, each at the scale the one before hands its outputs on at
        (what ``step`` returns)."""
        scales: tuple[int, ...] = DEFAULT_SCALES[floor:]
        for k in range(len(paths)):
            out = step(k, scales)
            if k < last:
                scales, shifts[k] = (min(out),), [s - min(out) for s in out]
                shifted = paths[k + 1].with_name(f"slice-{k + 1}-read-at-{'-'.join(map(str, out))}.onnx")
                if any(shifts[k]) and used[k + 1] != shifted:
                    progress(f"slice {k + 1}'s outputs leave at scales {sorted(set(out))}: slice {k + 2} reads "
                             f"them at {min(out)} and multiplies the finer ones back by their power of two")
                    onnx.save(slicing.read_at(onnx.load(str(paths[k + 1])), shifts[k]), str(shifted))
                used[k + 1] = shifted if any(shifts[k]) else paths[k + 1]

    settled: list[tuple[Candidate, dict[str, Any]]] = []

    def settle(k: int, scales: tuple[int, ...]) -> list[int]:
        progress(f"slice {k + 1} of {len(paths)}: settling its circuit, no key setup yet (input scale "
                 f"{'/'.join(map(str, scales))})")
        settled.append(one(k, scales, None, settling=True))
        return [int(x) for x in settled[-1][1]["model_output_scales"]]

    walk(settle)
    tallest = max(int(settings["run_args"]["logrows"]) for _, settings in settled)

    def build(k: int, scales: tuple[int, ...]) -> list[int]:
        progress(f"slice {k + 1} of {len(paths)}: compiling on logrows {tallest} (input scale "
                 f"{'/'.join(map(str, scales))})")
        result = one(k, scales, tallest,
                     _from_settled(settled[k], scales, tallest) if options.search == "quick" else None)
        manifests.append(result.manifest)
        ids.append(result.model_id)
        return _output_scales(store, result.manifest)

    walk(build)
    for _ in range(len(paths)):  # a slice laid out again may come out taller still: then the others follow it
        tallest = max(m.logrows for m in manifests)
        for k, m in enumerate(manifests):
            if m.logrows < tallest:
                progress(f"slice {k + 1} of {len(paths)}: laid out again on logrows {tallest} (from {m.logrows}), "
                         "the slices' one domain: a link is the same KZG commitment on both sides only on it")
                scale = int(json.loads(store.get(m.settings.cid))["run_args"]["input_scale"])
                result = one(k, (scale,), tallest)  # at the scale it picked: its outputs' scale is the next's input
                if k < last and _output_scales(store, result.manifest) != _output_scales(store, m):
                    raise CircuitCompileError(f"slice {k + 1} laid out taller leaves at another scale: compile "
                                              "again with --slices another count")
                manifests[k], ids[k] = result.manifest, result.model_id
        if len({m.logrows for m in manifests}) == 1:
            break
    if len({m.logrows for m in manifests}) != 1:
        raise CircuitCompileError("the slices could not be laid out on one logrows "
                                  f"({', '.join(str(m.logrows) for m in manifests)}): cut another count")
    return manifests, ids


def _from_settled(settled: tuple[Candidate, dict[str, Any]], scales: tuple[int, ...], tallest: int
                  ) -> list[Candidate]:
    """The candidates a slice's compile tries, from the one its search settled on (at the scale its input arrives
    at now): that one alone where it is laid out on its own logrows; else its decomposition at 1, 2 and 4 columns
    (on more rows, fewer columns may be cheaper)."""
    pick, settings = settled
    scale = pick.scale if pick.scale in scales else scales[0]
    if int(settings["run_args"]["logrows"]) >= tallest or pick.decomp_base is None:
        return [Candidate(pick.decomp_base, pick.decomp_legs, scale, pick.num_inner_cols)]
    return [Candidate(pick.decomp_base, pick.decomp_legs, scale, cols) for cols in DEFAULT_COLUMNS]


def _output_scales(store: LocalStore, manifest: ModelManifest) -> list[int]:
    """The scales a slice's outputs leave at, in order (the next slice reads them at the coarsest)."""
    return [int(x) for x in json.loads(store.get(manifest.settings.cid))["model_output_scales"]]


def _inputs(path: Path) -> list[Any]:
    return list(models.load_model(path).inputs)


def _end_to_end(store: LocalStore, manifests: list[ModelManifest], ids: list[str], samples: list[list[np.ndarray]],
                normalized: Path, work: Path, bound: AccuracyBound | None) -> dict[str, Any]:
    """The slices' witnesses in order on each sample against onnxruntime on the whole model, and the bound one
    circuit of the model would have been held to (``AccuracyBound.limit`` of the model's outputs)."""
    from proofmarket.systems.ezkl.prover import EzklProver
    from proofmarket.systems.ezkl.salt import circuit_input
    from proofmarket.systems.ezkl.worker import InlineProofWorker

    worst, refs, argmax = 0.0, [], True
    here = EzklProver(store, work, InlineProofWorker())  # the prover's witness path, in the compile's own process
    salt = [0] * here.model(ids[0])[0].salt_elements or None
    for s in samples:
        outputs = chain_witness(handoff_scales(store, manifests), circuit_input(s, salt),
                                lambda k, x, at: here.witness_outputs(ids[k], x, scales=at))[-1]
        want = models.run_onnx(normalized, s)
        refs.extend(want)
        for got, ref in zip(outputs, want, strict=True):
            flat = np.asarray(ref, dtype=np.float64).ravel()
            worst = max(worst, float(np.max(np.abs(np.asarray(got) - flat))) if flat.size else 0.0)
            argmax = argmax and (flat.size < 2 or int(np.argmax(got)) == int(np.argmax(flat)))
    return {"max_abs_error": worst, "limit": (bound or AccuracyBound()).limit(refs), "argmax_match": argmax,
            "samples": len(samples)}


# --- the dry run ---------------------------------------------------------------------------------------------------
def count_slices(onnx_path: Path, budget: Budget, progress: Progress = lambda _: None) -> int:
    """How many slices ``compile --slices auto`` cuts the model into: the fewest that fit ``budget`` (1: it fits
    as one circuit)."""
    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        normalized = _normalized(onnx_path, work)[1]
        return slice_costs.planned(onnx.load(str(normalized)), None, budget, work / "costs", progress).count


def predict_sliced(onnx_path: Path, profile: PrivacyProfile, slices: int | None, provers: int, budget: Budget
                   ) -> dict[str, Any]:
    """``compile --slices N|auto --dry-run``: the plan (``slice_costs.planned``: ``None`` slices, the fewest that fit
    ``budget``) and each slice's cost from its graph alone (``graph_floor``: no calibration), and a call's proof wall
    time on ``provers`` provers (the slices' proofs scheduled longest first on the least loaded prover)."""
    from proofmarket.systems.ezkl.predict import graph_floor

    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        normalized = _normalized(onnx_path, work)[1]
        plan = slice_costs.planned(onnx.load(str(normalized)), slices, budget, work / "costs")
        paths = slicing.write_slices(normalized, plan, work / "slices")[1]
        last = len(paths) - 1

        def floor_of(k: int, min_logrows: int = 1) -> Any:
            return graph_floor(paths[k], input_visibility=profile.input if k == 0 else COMMITTED,
                               param_visibility="fixed", output_visibility="public" if k == last else COMMITTED,
                               min_logrows=min_logrows)

        tallest = max(floor_of(k).logrows for k in range(len(paths)))  # the slices share one domain (the links)
        rows = []
        for k in range(len(paths)):
            floor = floor_of(k, tallest)
            rows.append({"slice": k + 1, "work": plan.works()[k], "logrows": floor.logrows,
                         "prove_s": round(floor.prove_s, 2), "pk_mb": round(floor.pk_mb, 1),
                         "peak_rss_mb": round(floor.peak_rss_mb, 1)})
    loads = [0.0] * max(1, provers)
    for row in sorted(rows, key=lambda r: -float(r["prove_s"])):
        loads[loads.index(min(loads))] += float(row["prove_s"])
    return {"plan": plan.to_json(), "slices": rows, "provers": max(1, provers), "wall_s": round(max(loads), 2),
            "serial_s": round(sum(float(r["prove_s"]) for r in rows), 2),
            "basis": "each slice's rows from its graph alone at EZKL's default scale (not calibrated): a lower bound"}
