"""Compiling a sliced model (``sliced.py`` says what one is): the graph cut (``models/slicing.py``), each slice
compiled by the one compiler at the scale its input arrives at, the slices held together to the model's accuracy
bound; and the dry run of ``compile --slices N`` (each slice's cost from its graph, a call's wall time)."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from proofmarket import models
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
from proofmarket.systems.ezkl.profile import COMMITTED, SALT_ELEMENTS, PrivacyProfile
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

    if options.profile.params != "fixed":
        raise UsageError("a sliced model keeps its weights in its keys (params=fixed): hashed weights are for one "
                         "circuit")
    with tempfile.TemporaryDirectory(prefix="proofmarket-slices-") as tmp:
        work = Path(tmp)
        info, normalized = normalized_whole(onnx_path, work)
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
        chain = _Chain(paths, plan, samples, between, store, options, work / "settled", progress)
        floor: int | None = 0
        while floor is not None:
            try:
                settled = chain.settle(floor)  # no key setup yet: a miss end to end costs none either
                floor = _again(_end_to_end(samples, normalized, options.bound, *chain.settled_witness(settled)),
                               int(settled[0].settings["run_args"]["input_scale"]), options, progress,
                               "settled, before any key setup")
                if floor is not None:
                    continue
                manifests, ids = chain.build(settled)
            except _TooCoarse as exc:
                floor = _finer(exc.scale, exc.error)
                progress(f"slice {exc.k + 1} is not accurate at its input scale {exc.scale}: every slice again from "
                         f"scale {DEFAULT_SCALES[floor]}")
                continue
            accuracy = _end_to_end(samples, normalized, options.bound, *_built_witness(store, manifests, ids, work))
            scale = int(json.loads(store.get(manifests[0].settings.cid))["run_args"]["input_scale"])
            floor = _again(accuracy, scale, options, progress, "compiled")
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


def normalized_whole(onnx_path: Path, work: Path) -> tuple[Any, Path]:
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


@dataclasses.dataclass
class _Settled:
    candidate: Candidate  # what the slice's search settled on (no key setup)
    settings: dict[str, Any]  # its settings (EZKL's)
    compiled: Path  # its circuit: a witness needs no keys


class _Chain:
    """The slices compiled in order, each at the scale its input arrives at (the coarsest of its inputs', the finer
    ones multiplied back inside it: ``slicing.read_at``), all on one logrows (a committed link is a KZG commitment
    over the circuit's domain: the same on both sides only on the same domain).

    ``settle`` runs every slice's search without a key setup (``compiler.settle_model``): a slice not accurate at the
    scale its input arrives at then costs no key setup or proof of the slices before it, the slices' errors end to
    end are known from their settled circuits, and so is the tallest slice's logrows. ``build`` then compiles each on
    that logrows, from the circuit it settled on (a quick search: its decomposition and scale, at 1, 2 or 4
    columns; the owner's candidates, where given, as given); a slice that still comes out taller is followed by the
    others, laid out again."""

    def __init__(self, paths: list[Path], plan: slicing.SlicePlan, samples: list[list[np.ndarray]],
                 between: list[list[list[np.ndarray]]], store: LocalStore, options: Any, work: Path,
                 progress: Progress) -> None:
        self.paths, self.plan, self.samples, self.between = paths, plan, samples, between
        self.store, self.options, self.work, self.progress = store, options, work, progress
        self.used = list(paths)  # slice k as compiled: its input shifted where its tensors arrive at mixed scales
        self.shifts: list[list[int]] = [[0] * len(b) for b in between[0]] if between else []
        self.floor = 0
        work.mkdir(parents=True, exist_ok=True)

    def one(self, k: int, scales: tuple[int, ...], min_logrows: int | None, given: list[Candidate] | None = None,
            keep: Path | None = None) -> Any:
        """Slice ``k`` compiled (or settled, its circuit kept at ``keep``)."""
        from proofmarket.systems.ezkl.compiler import compile_model, settle_model

        options, last = self.options, len(self.paths) - 1
        profile = PrivacyProfile(options.profile.input if k == 0 else COMMITTED, "fixed",
                                 "public" if k == last else COMMITTED)
        if k == 0:
            doc: Any = {"inputs": [{t.name: a.tolist() for t, a in zip(_inputs(self.paths[k]), s, strict=True)}
                                   for s in self.samples]}
        else:  # as slice k-1's felts read at one scale
            names, up = [t.name for t in _inputs(self.used[k])], self.shifts[k - 1]
            doc = {"inputs": [{n: (a * 2.0 ** u).tolist() for n, a, u in zip(names, b[k - 1], up, strict=True)}
                              for b in self.between]}
        given = given or (None if options.candidates is None else [  # fresh ones per slice (a search fills them in)
            Candidate(c.decomp_base, c.decomp_legs, c.scale if k == 0 and c.scale in scales else scales[0],
                      c.num_inner_cols) for c in options.candidates])
        slice_options = dataclasses.replace(
            options, profile=profile, scales=scales, candidates=given,
            name=f"{options.name or self.paths[k].stem} slice {k + 1}/{len(self.paths)}",
            # a later slice's inputs are computed over the first's domain: one that never varies is the graph's
            # constant (an attention mask's -100), widened by the margin alone
            batch_sizes=(), domain=options.domain if k == 0 else None, unvaried_width=None if k == 0 else 1.0,
            task=options.task if k == last else "regression", budget=options.budget, oversize_verifier_ok=True,
            min_logrows=min_logrows)
        say = lambda line: self.progress(f"[slice {k + 1}] {line}")  # noqa: E731
        try:
            if keep is not None:
                return settle_model(self.used[k], doc, self.store, slice_options, say, keep)
            return compile_model(self.used[k], doc, self.store, slice_options, say)
        except AccuracyNotMet as exc:
            if k == 0:
                raise
            raise _TooCoarse(k, scales[0], exc) from exc
        except ModelOverBudget as exc:  # this slice alone is over: more, smaller slices may fit
            raise ModelOverBudget(f"slice {k + 1} of {len(self.paths)} (work {self.plan.works()[k]:,} of "
                                  f"{self.plan.total_work:,}) is over: {exc.message}; cut it finer (--slices "
                                  f"{len(self.paths) + 1} or more, or --slices auto, where the graph has places to "
                                  "cut)", **exc.details) from exc

    def walk(self, step: Any) -> None:
        """``step(k, scales)`` for every slice in order, each at the scales the one before hands its outputs on at
        (what ``step`` returns)."""
        scales: tuple[int, ...] = DEFAULT_SCALES[self.floor:]
        for k in range(len(self.paths) - 1):
            out = step(k, scales)
            scales, self.shifts[k] = (min(out),), [s - min(out) for s in out]
            shifted = self.paths[k + 1].with_name(f"slice-{k + 1}-read-at-{'-'.join(map(str, out))}.onnx")
            if any(self.shifts[k]) and self.used[k + 1] != shifted:
                self.progress(f"slice {k + 1}'s outputs leave at scales {sorted(set(out))}: slice {k + 2} reads "
                              f"them at {min(out)} and multiplies the finer ones back by their power of two")
                onnx.save(slicing.read_at(onnx.load(str(self.paths[k + 1])), self.shifts[k]), str(shifted))
            self.used[k + 1] = shifted if any(self.shifts[k]) else self.paths[k + 1]
        step(len(self.paths) - 1, scales)

    def settle(self, floor: int) -> list[_Settled]:
        settled: list[_Settled] = []
        self.floor = floor

        def step(k: int, scales: tuple[int, ...]) -> list[int]:
            self.progress(f"slice {k + 1} of {len(self.paths)}: settling its circuit, no key setup yet (input "
                          f"scale {'/'.join(map(str, scales))})")
            keep = self.work / f"slice-{k + 1}.compiled"
            candidate, settings = self.one(k, scales, None, keep=keep)
            settled.append(_Settled(candidate, settings, keep))
            return [int(x) for x in settled[-1].settings["model_output_scales"]]

        self.walk(step)
        return settled

    def settled_witness(self, settled: list[_Settled]) -> tuple[list[list[int] | None], bool, Any]:
        """The settled circuits' hand-over scales, whether the first takes a salt, and their witnesses (as
        ``chain_witness`` calls them)."""
        sizes = [[math.prod(t.shape) for t in models.load_model(p).outputs] for p in self.used]
        handoff: list[list[int] | None] = [
            [int(after.settings["run_args"]["input_scale"])] * len(size)
            for after, size in zip(settled[1:], sizes, strict=False)]

        def witness(k: int, flat: list[list[float]], at: list[int] | None) -> list[list[float]]:
            data, out = self.work / f"input-{k + 1}.json", self.work / f"witness-{k + 1}.json"
            data.write_text(json.dumps({"input_data": flat}))
            felts = ezkl_calls.gen_witness(data, settled[k].compiled, out)["outputs"]
            return ezkl_calls.decode_values(felts, at or settled[k].settings["model_output_scales"], sizes[k])
        return [*handoff, None], self.options.profile.salted, witness

    def build(self, settled: list[_Settled]) -> tuple[list[ModelManifest], list[str]]:
        manifests: list[ModelManifest] = []
        ids: list[str] = []
        tallest = max(int(s.settings["run_args"]["logrows"]) for s in settled)

        def step(k: int, scales: tuple[int, ...]) -> list[int]:
            self.progress(f"slice {k + 1} of {len(self.paths)}: compiling on logrows {tallest} (input scale "
                          f"{'/'.join(map(str, scales))})")
            searched = self.options.search == "quick" and self.options.candidates is None  # else as asked
            result = self.one(k, scales, tallest, _from_settled(settled[k], scales) if searched else None)
            manifests.append(result.manifest)
            ids.append(result.model_id)
            return _output_scales(self.store, result.manifest)

        self.walk(step)
        for _ in range(len(self.paths)):  # a slice laid out again may come out taller still: the others follow it
            tallest = max(m.logrows for m in manifests)
            for k, m in enumerate(manifests):
                if m.logrows < tallest:
                    self.progress(f"slice {k + 1} of {len(self.paths)}: laid out again on logrows {tallest} (from "
                                  f"{m.logrows}), the slices' one domain: a link is the same KZG commitment on both "
                                  "sides only on it")
                    scale = int(json.loads(self.store.get(m.settings.cid))["run_args"]["input_scale"])
                    result = self.one(k, (scale,), tallest)  # at the scale it picked: its outputs' scale is the next's
                    if k < len(self.paths) - 1 and _output_scales(self.store, result.manifest) != _output_scales(
                            self.store, m):
                        raise CircuitCompileError(f"slice {k + 1} laid out taller leaves at another scale: compile "
                                                  "again with --slices another count")
                    manifests[k], ids[k] = result.manifest, result.model_id
            if len({m.logrows for m in manifests}) == 1:
                return manifests, ids
        raise CircuitCompileError("the slices could not be laid out on one logrows "
                                  f"({', '.join(str(m.logrows) for m in manifests)}): cut another count")


def _from_settled(settled: _Settled, scales: tuple[int, ...]) -> list[Candidate]:
    """The candidates a slice's compile tries, from the one its search settled on (at the scale its input arrives
    at now): its decomposition at 1, 2 and 4 columns, the cheapest on the tallest slice's logrows timed first, the
    others its fallbacks (a verifier the chain refuses)."""
    pick = settled.candidate
    scale = pick.scale if pick.scale in scales else scales[0]
    if pick.decomp_base is None:
        return [Candidate(None, None, scale, pick.num_inner_cols)]
    return [Candidate(pick.decomp_base, pick.decomp_legs, scale, cols) for cols in DEFAULT_COLUMNS]


def _output_scales(store: LocalStore, manifest: ModelManifest) -> list[int]:
    """The scales a slice's outputs leave at, in order (the next slice reads them at the coarsest)."""
    return [int(x) for x in json.loads(store.get(manifest.settings.cid))["model_output_scales"]]


def _inputs(path: Path) -> list[Any]:
    return list(models.load_model(path).inputs)


def _built_witness(store: LocalStore, manifests: list[ModelManifest], ids: list[str], work: Path
                   ) -> tuple[list[list[int] | None], bool, Any]:
    """The compiled slices' hand-over scales, whether the first takes a salt, and their witnesses, as the prover
    computes them (in the compile's own process)."""
    from proofmarket.systems.ezkl.prover import EzklProver
    from proofmarket.systems.ezkl.worker import InlineProofWorker

    here = EzklProver(store, work / "check", InlineProofWorker())
    return (handoff_scales(store, manifests), bool(here.model(ids[0])[0].salt_elements),
            lambda k, x, at: here.witness_outputs(ids[k], x, scales=at))


def _end_to_end(samples: list[list[np.ndarray]], normalized: Path, bound: AccuracyBound | None,
                handoff: list[list[int] | None], salted: bool, witness: Any) -> dict[str, Any]:
    """The slices' witnesses in order on each sample against onnxruntime on the whole model, and the bound one
    circuit of the model would have been held to (``AccuracyBound.limit`` of the model's outputs)."""
    from proofmarket.systems.ezkl.salt import circuit_input

    worst, refs, argmax = 0.0, [], True
    for s in samples:
        outputs = chain_witness(handoff, circuit_input(s, [0] * SALT_ELEMENTS if salted else None), witness)[-1]
        want = models.run_onnx(normalized, s)
        refs.extend(want)
        for got, ref in zip(outputs, want, strict=True):
            flat = np.asarray(ref, dtype=np.float64).ravel()
            worst = max(worst, float(np.max(np.abs(np.asarray(got) - flat))) if flat.size else 0.0)
            argmax = argmax and (flat.size < 2 or int(np.argmax(got)) == int(np.argmax(flat)))
    return {"max_abs_error": worst, "limit": (bound or AccuracyBound()).limit(refs), "argmax_match": argmax,
            "samples": len(samples)}


def _again(accuracy: dict[str, Any], scale: int, options: Any, progress: Progress, slices: str) -> int | None:
    """Said, the slices' error end to end; where it misses the bound, the grid index to compile every slice again
    from (``_finer``: as many bits finer as it missed by), else None."""
    progress(f"end to end on {accuracy['samples']} sample(s), the slices {slices}: max abs error "
             f"{accuracy['max_abs_error']:.4g} against onnxruntime (the bound: {accuracy['limit']:.4g})")
    missed = _missed(accuracy, options.task == "classification")
    if missed is None:
        return None
    floor = _finer(scale, AccuracyNotMet(
        f"the slices together miss the accuracy bound: {missed} end to end, at the finest scale searched; cut fewer "
        "slices, or loosen --max-error", **accuracy), accuracy["max_abs_error"] / accuracy["limit"])
    progress(f"the slices' errors add up past the bound at scale {scale}: every slice again from scale "
             f"{DEFAULT_SCALES[floor]}")
    return floor
