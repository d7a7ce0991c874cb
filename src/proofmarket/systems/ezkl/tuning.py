"""Settings search: the circuit whose calls cost least, within an accuracy bound.

EZKL's defaults decompose values with base 16384 in 2 legs, which forces a 2^15-row range table; a
smaller base with more legs, with the right scale and column count, often fits the same model in
2^9-2^11 rows and proves 10-40x faster. We try each small decomposition at one inner column and the
coarsest scale that keeps the witness outputs on the owner's samples within the bound against onnxruntime
(a finer scale only widens the values: more rows, never fewer), EZKL's own decomposition and defaults only
when their range table alone does not rule them out, then more columns for the cheapest few while the rows
(not a table or a hash) set their size; EZKL calibrates each to its smallest logrows. Then keys and timed
real proofs (several, for their spread) for the few the work model ranks cheapest and no other candidate
beats on every count (rows, columns, lookups), within a search budget that grows with the predicted prove
time. Every candidate tried is reported.

What a call costs (the :class:`Objective`): the node's CPU seconds and the caller's wait for the proof,
the verification gas a consumer pays when the model is sold on chain (predicted from the proof's size and
public instances by a fit measured with ``bench/verifier_gas.py``), and the proof's bytes. ``prove`` orders
by prove time, ``verify`` by gas, ``balanced`` (the default) by the sum in US dollars at the stated prices.
A candidate's prove time is the work model's prediction unless its measurement (divided by the load the other
timed candidates show) is several times off it, and times that differ by less than their noise count as equal, so
the order between them is decided by gas and size: the same file and samples give the same circuit on a quiet or a
loaded machine. Only what does not depend on the machine goes into the manifest (and so into the model id); the measured
times are the compile's report (:meth:`TuningReport.measurements`).

Calibration may also pick the scale-rebase multiplier (when to divide a product back to the input
scale). EZKL only offers 1 and 10; 10 overflows a small decomposition base, leaving 1, which rescales
after every product. Offering 2 as well halves the CNN's rows (6632 -> 3688 at base 1024, one column),
so we pass REBASE_MULTIPLIERS.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from proofmarket.core.errors import AccuracyNotMet, ProofMarketError
from proofmarket.systems.ezkl import ezkl_calls, grid
from proofmarket.systems.ezkl.candidates import (
    DEFAULT_COLUMNS,
    DEFAULT_DECOMPOSITIONS,
    DEFAULT_SCALES,
    EZKL_DECOMPOSITION,
    EZKL_DEFAULT_SCALE,
    FLOOR_SCALE,
    FLOOR_STEPS,
    GAS_BASE,
    GAS_FIT_ERROR,
    GAS_PER_INSTANCE,
    GAS_PER_PROOF_BYTE,
    MAX_LOGROWS,
    NOISE_FLOOR,
    OBJECTIVES,
    REBASE_MULTIPLIERS,
    WIDEN,
    WITHIN,
    AccuracyBound,
    Candidate,
    Objective,
    TuningReport,
    covering,
    default_candidates,
    ezkl_default_candidate,
    is_label,
    larger_than_predicted,
    not_met,
    predicted_gas,
    top2_gap,
)
from proofmarket.systems.ezkl.canonical import canonical_circuit, canonical_settings
from proofmarket.systems.ezkl.predict import SETUP_PER_PROVE, from_settings
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.ranking import (
    cost_rank,
    dominates,
    floor_work,
    gas_rank,
    hash_bound,
    machine_load,
    pick,
    ranked,
    repeats_for,
    timing_budget,
    to_time,
    work,
)
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.timing import proof_size, time_proof

__all__ = [  # the grid's vocabulary and order live in candidates.py and ranking.py; the search is here
    "DEFAULT_COLUMNS", "DEFAULT_DECOMPOSITIONS", "DEFAULT_SCALES", "EZKL_DECOMPOSITION", "EZKL_DEFAULT_SCALE",
    "FLOOR_STEPS", "GAS_BASE", "GAS_FIT_ERROR", "GAS_PER_INSTANCE", "GAS_PER_PROOF_BYTE", "MAX_LOGROWS",
    "NOISE_FLOOR", "OBJECTIVES", "REBASE_MULTIPLIERS", "WIDEN", "WITHIN", "AccuracyBound", "Candidate", "Objective",
    "Progress", "TuningJob", "TuningReport", "build_candidate", "calibration_input", "canonical_circuit",
    "canonical_settings", "cost_rank", "decode_outputs", "default_candidates", "dominates", "ezkl_default_candidate",
    "floor_work", "hash_bound", "machine_load", "pick", "predicted_gas", "proof_size", "ranked", "repeats_for",
    "search", "settle", "time_proof", "timing_budget", "to_time", "work",
]


Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


@dataclass
class TuningJob:
    model: Path  # the ONNX that becomes the circuit (normalised, maybe salted)
    samples: list[list[list[float]]]  # per sample: the flat EZKL input_data (one list per input)
    reference: list[list[np.ndarray]]  # onnxruntime outputs per sample
    profile: PrivacyProfile
    workdir: Path
    srs: SrsProvider
    bound: AccuracyBound
    timed: int = 2  # at least this many circuit shapes get real timed proofs
    objective: Objective = field(default_factory=Objective)
    budget_s: float | None = None  # seconds of key setup and proofs the timing may spend (None: from the model)
    known: dict[str, Candidate] = field(default_factory=dict)  # evaluated already (likely_pick): reused by label
    expect_logrows: int | None = None  # the dry run's prediction: a larger pick is explained before the timing
    # points covering the model's input domain (models/domain.py), flat per input: calibrated on beside the samples,
    # and a candidate whose witness fails on one of them is not accurate (a call inside the domain would fail)
    domain_points: list[list[list[float]]] = field(default_factory=list)
    # a quick search (compile's default, ``grid.py``): scales settled once, one circuit widened, the cheapest timed
    # alone with one proof; False: the thorough search (every ladder, WIDEN widened, several timed and repeated)
    quick: bool = False
    # the input scales the grid may use (a slice after the first: the previous slice's output scale alone, so
    # the tensor they share quantises the same on both sides; sliced.py)
    scales: tuple[int, ...] = DEFAULT_SCALES
    # every candidate laid out on at least this many logrows (a sliced model's slices share one: a committed link
    # is a KZG commitment over the circuit's domain, the same on both sides only on the same domain; sliced.py)
    min_logrows: int | None = None


TIMED_AT_MOST = 8  # accurate candidates checked on the input domain, cheapest first: more than the timing takes
QUICK_KEEP = 3  # ... in a quick search: the one timed and two to fall back on (a verifier the EVM refuses),
# checked on the domain when they are fallen back on
LIKELY_INDEX = 900  # the file index of likely_pick's candidates (the search's own count from 0)


def search(job: TuningJob, candidates: list[Candidate] | None = None, progress: Progress = _noop) -> TuningReport:
    """Evaluate ``candidates`` as given, or the default grid (:func:`_default_grid`), then time the cheapest."""
    started = time.perf_counter()
    candidates, accurate, limit = settle(job, candidates, progress)
    budget = job.budget_s if job.budget_s is not None else 0.0 if job.quick else timing_budget(accurate[0])
    return _timed(job, candidates, accurate, limit, budget, progress, started)


def settle(job: TuningJob, candidates: list[Candidate] | None = None, progress: Progress = _noop
           ) -> tuple[list[Candidate], list[Candidate], float]:
    """The search up to its timing, no key setup: every candidate evaluated, the accurate ones on the input domain
    (cheapest first: the first is what a quick search times) and the error limit; ``AccuracyNotMet`` when none is
    accurate. A sliced compile settles each slice first (``sliced_compile.py``)."""
    scales = [c.scale if c.scale is not None else EZKL_DEFAULT_SCALE for c in candidates or []]
    finest = max([*scales, *((FLOOR_SCALE,) if candidates is None else ())], default=7)
    limit = job.bound.limit([o for outs in job.reference for o in outs], finest)
    data = job.workdir / "calibration.json"
    data.write_text(json.dumps(calibration_input(job.samples + job.domain_points)))
    measured: dict[tuple[object, ...], Candidate] = {}
    if candidates is None:
        candidates = _default_grid(job, data, limit, measured, progress)
    else:
        _evaluate(job, candidates, 0, data, limit, measured, progress)
    order = gas_rank if job.quick and job.objective.name == "verify" else cost_rank  # what the one timed is
    accurate = covering(job.domain_points, job.workdir, sorted((c for c in candidates if c.status == "ok"),
                                                               key=order),
                        keep=1 if job.quick else max(job.timed, TIMED_AT_MOST))  # a quick search's fallbacks are
    # checked on the domain only when they are needed (on_chain.fall_back): each check is a witness per point
    if not accurate:
        raise AccuracyNotMet(not_met(candidates, limit, job.bound.classifier),
                             candidates=[c.to_dict() for c in candidates])
    if job.expect_logrows is not None and (accurate[0].logrows or 0) > job.expect_logrows:
        progress(larger_than_predicted(candidates, accurate[0], job.expect_logrows))
    ties = sorted({i for c in accurate for i in c.near_ties})
    if ties:
        progress(f"note: sample(s) {', '.join(map(str, ties))} sit within quantisation noise of a class boundary: "
                 "their class may differ from onnxruntime's (not counted as a failure)")
    return candidates, accurate, limit


def _timed(job: TuningJob, candidates: list[Candidate], accurate: list[Candidate], limit: float, budget: float,
           progress: Progress, started: float) -> TuningReport:
    chosen = to_time(accurate, job.timed, budget_s=budget)
    for n, cand in enumerate(chosen, start=1):
        repeats = repeats_for(cand, alone=len(chosen) == 1)
        proof_s = cand.prove_s_predicted or 0.0  # from its settings when it was built (build_candidate)
        progress(f"timing {cand.label} ({n} of {len(chosen)}: logrows {cand.logrows}, {cand.num_inner_cols or 2} "
                 f"columns; a key setup and {repeats} proofs, about {(SETUP_PER_PROVE + repeats) * proof_s:.0f} s)")
        time_proof(job, cand, repeats=repeats)
    timed = [c for c in accurate if c.timed]
    picked = pick(timed, job.objective)
    per_work = float(np.exp(np.mean([np.log((c.prove_s or 1e-9) / work(c)) for c in timed])))
    for cand in candidates:  # an estimate from the candidate's own rows and columns, fitted on every timed one
        if cand.prove_s is None and cand.logrows is not None:
            cand.prove_s_estimated = round(per_work * work(cand), 4)
    return TuningReport(candidates, picked, limit, job.objective, round(time.perf_counter() - started, 2))


def likely_pick(job: TuningJob, progress: Progress = _noop, first_only: bool = False,
                only: Candidate | None = None) -> Candidate | None:
    """What compile most likely picks, with no key setup (the dry run's prediction): the default grid's first step
    (each small decomposition at one inner column, scales coarse to fine until accurate on the samples), its
    cheapest accurate candidate. None when none is (compile then searches further and says why its pick is larger).
    Every candidate evaluated here goes into ``job.known``: the search reuses them. ``first_only`` (the dry run):
    the first decomposition that is accurate at some scale ends it (the others change the rows by a few per cent
    on the models measured); ``only``: that one candidate alone."""
    limit = job.bound.limit([o for outs in job.reference for o in outs], FLOOR_SCALE)
    data = job.workdir / "calibration-likely.json"
    data.write_text(json.dumps(calibration_input(job.samples + job.domain_points)))
    tried: list[Candidate] = []

    def run(cand: Candidate) -> Candidate:
        _evaluate(job, [cand], LIKELY_INDEX + len(tried), data, limit, {}, progress)
        job.known[cand.label] = cand
        tried.append(cand)
        return cand

    if only is not None:
        run(only)
    else:
        grid.first_step(run, tried, job.quick, first_only, job.scales)
    accurate = covering(job.domain_points, job.workdir, sorted((c for c in tried if c.status == "ok"), key=cost_rank),
                        keep=1)
    return accurate[0] if accurate else None


def _default_grid(job: TuningJob, data: Path, limit: float, measured: dict[tuple[object, ...], Candidate],
                  progress: Progress) -> list[Candidate]:
    """The default grid, tried in the order that lets most of it be skipped:

    1. each small decomposition at one inner column and the coarsest accurate scale: a finer scale is tried
       only when the coarser one is inaccurate (its values only grow: more rows, never fewer), and after a
       failure only while no accurate circuit has been found (a finer scale usually overflows what the coarser
       one did, but a model whose coarse scales cannot calibrate at all, such as a normalisation whose variance
       rounds to zero, may calibrate at a finer one);
    2. EZKL's own decomposition and defaults, unless their range table alone (2^15 rows) makes them more than
       ``WITHIN`` times the work of a circuit already found: those are never timed, so never worth calibrating;
       a quick search skips EZKL's defaults (its decomposition at two inner columns, at a scale of its choosing)
       once an accurate circuit's rows set its size: step 3 widens EZKL's decomposition to two columns at the
       scale the ladder settled, where the rows are set by the computation (LeNet-5: 379,466 rows, against
       487,658 for EZKL's defaults; the MLP 784-56-10: 26,968 and 28,256), and EZKL's own calibration over its
       scales is the costliest candidate (a minute of LeNet-5's compile);
    3. two, then four inner columns for the ``WIDEN`` cheapest one-column circuits whose rows set their size
       (the cheapest one only, in a quick search: ``grid.py``).
       Where a table or a hash sets the size (rows under half of it), more columns cannot lower it; where two
       columns did not shrink the rows, no wider circuit can either.

    Once an accurate circuit's rows are its Poseidon hashing's (a hashed input or weights), no other
    decomposition or column count can make it smaller: step 1 stops there and step 3 skips it.
    """
    tried: list[Candidate] = []

    def run(cand: Candidate) -> Candidate:
        seen = job.known.get(cand.label)
        if seen is not None:  # evaluated by the prediction (likely_pick) on the same samples and bound
            tried.append(seen)
            return seen
        _evaluate(job, [cand], len(tried), data, limit, measured, progress)
        tried.append(cand)
        return cand

    grid.first_step(run, tried, job.quick, scales=job.scales)
    best = min((work(c) for c in tried if c.status == "ok"), default=float("inf"))
    if floor_work(EZKL_DECOMPOSITION[0], 1) < WITHIN * best:
        grid.ladder(run, tried, *EZKL_DECOMPOSITION, quick=job.quick, scales=job.scales)
    rows_set_size = job.quick and any(grid.rows_bound(c) for c in tried)
    if floor_work(EZKL_DECOMPOSITION[0], 2) < WITHIN * best and job.scales == DEFAULT_SCALES and not rows_set_size:
        run(ezkl_default_candidate())  # EZKL picks its own scale: not where the scales are given
    grid.widen(run, tried, job.quick)
    return tried


def _evaluate(job: TuningJob, candidates: list[Candidate], first: int, data: Path, limit: float,
              measured: dict[tuple[object, ...], Candidate], progress: Progress) -> None:
    for i, cand in enumerate(candidates, start=first):
        progress(f"candidate {i + 1} {cand.label}")
        try:
            build_candidate(job, cand, data, index=i)
            same = measured.get(_arithmetic(cand))
            if same is None:
                _measure_accuracy(job, cand, limit)
                measured[_arithmetic(cand)] = cand
            else:  # only the layout differs (inner columns): the witness outputs are the same
                cand.max_abs_error, cand.argmax_match, cand.status = same.max_abs_error, same.argmax_match, same.status
                cand.failure, cand.near_ties = same.failure, same.near_ties
        except ProofMarketError as exc:
            cand.status = f"failed: {exc.message[:160]}"


def calibration_input(samples: list[list[list[float]]]) -> dict[str, object]:
    """All samples concatenated per input, as ezkl.calibrate_settings wants them."""
    n_inputs = len(samples[0])
    return {"input_data": [[v for s in samples for v in s[k]] for k in range(n_inputs)]}


def build_candidate(job: TuningJob, cand: Candidate, data: Path, index: int) -> None:
    settings = job.workdir / f"settings-{index}.json"
    compiled = job.workdir / f"circuit-{index}.ezkl"
    ra = ezkl_calls.run_args(
        input_visibility=job.profile.input, param_visibility=job.profile.params,
        decomp_base=cand.decomp_base, decomp_legs=cand.decomp_legs, num_inner_cols=cand.num_inner_cols,
        output_visibility=job.profile.output,
    )
    ezkl_calls.gen_settings(job.model, settings, ra)
    scales = [cand.scale] if cand.scale is not None else None
    rebase = list(REBASE_MULTIPLIERS) if cand.decomp_base is not None else None  # None: EZKL's defaults
    if job.profile.output == "committed":  # a slice's link: rebased to the input scale, the next slice's (sliced.py)
        rebase = [1]
    ezkl_calls.calibrate(data, job.model, settings, scales=scales, max_logrows=MAX_LOGROWS,
                         rebase_multipliers=rebase)
    meta = canonical_settings(json.loads(settings.read_text()))
    if job.min_logrows is not None and int(meta["run_args"]["logrows"]) < job.min_logrows:
        meta["run_args"]["logrows"] = job.min_logrows  # more rows than it needs: the same circuit, laid out taller
    settings.write_text(json.dumps(meta, sort_keys=True))
    ezkl_calls.compile_circuit(job.model, compiled, settings)
    compiled.write_bytes(canonical_circuit(compiled.read_bytes(), meta))
    cand.logrows = int(meta["run_args"]["logrows"])
    cand.num_rows = int(meta["num_rows"])
    cand.rebase = int(meta["run_args"]["scale_rebase_multiplier"])
    predicted = from_settings(meta)
    cand.lookups, cand.hash_rows = predicted.lookups, predicted.hash_rows
    cand.const_columns = -(-int(meta.get("total_const_size") or 0) // 2 ** cand.logrows)
    cand.scale = cand.scale if cand.scale is not None else int(meta["run_args"]["input_scale"])
    cand.prove_s_predicted = round(predicted.prove_s, 4)
    cand.settings_path, cand.compiled_path = settings, compiled


def _arithmetic(cand: Candidate) -> tuple[object, ...]:
    """What decides a candidate's witness values: everything in its run args but the layout."""
    assert cand.settings_path is not None
    run_args = dict(json.loads(cand.settings_path.read_text())["run_args"])
    for layout_only in ("num_inner_cols", "logrows"):
        run_args.pop(layout_only, None)
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in run_args.items()))


def _measure_accuracy(job: TuningJob, cand: Candidate, limit: float) -> None:
    assert cand.settings_path is not None and cand.compiled_path is not None
    scales = json.loads(cand.settings_path.read_text())["model_output_scales"]
    worst, argmax_ok, failure, ties = 0.0, True, None, []
    for i, (sample, reference) in enumerate(zip(job.samples, job.reference, strict=True)):
        inp = job.workdir / f"sample-{i}.json"
        inp.write_text(json.dumps({"input_data": sample}))
        witness = ezkl_calls.gen_witness(inp, cand.compiled_path, job.workdir / "witness.json")
        outputs = decode_outputs(witness["outputs"], scales, [r.shape for r in reference])
        tie, flipped = False, None
        for got, want in zip(outputs, reference, strict=True):
            if is_label(want):  # a class label: exact, or a tie (checked once every output is seen)
                if not np.array_equal(np.rint(got), np.asarray(want)):
                    flipped = f"label {np.rint(got).astype(int).ravel().tolist()} where onnxruntime says " \
                              f"{np.asarray(want).ravel().tolist()}"
                continue
            want = np.asarray(want, dtype=np.float64)
            error = float(np.max(np.abs(got - want))) if want.size else 0.0
            worst = max(worst, error)
            if error > limit and failure is None:
                failure = f"sample {i}: error {error:.4g} over the bound {limit:.4g}"
            if job.bound.classifier and want.size == 1:  # one score (a sigmoid's): its class is its side of 0.5
                threshold = 0.5 if 0.0 <= float(want.ravel()[0]) <= 1.0 else 0.0  # (a logit's side of 0)
                tie = tie or abs(float(want.ravel()[0]) - threshold) <= 2 * limit
                continue
            if not job.bound.classifier or want.size < 2 or int(np.argmax(got)) == int(np.argmax(want)):
                tie = tie or (job.bound.classifier and want.size >= 2 and top2_gap(want) <= 2 * limit)
                continue
            gap = top2_gap(want)
            if gap <= 2 * limit:  # two classes within quantisation noise of each other: either is the circuit's
                tie = True
                continue
            argmax_ok = False
            if failure is None:
                failure = (f"sample {i}: class {int(np.argmax(got))} where onnxruntime says {int(np.argmax(want))} "
                           f"(top-2 gap {gap:.4g})")
        if tie:
            ties.append(i)
        elif flipped is not None:
            argmax_ok = False
            failure = failure or f"sample {i}: {flipped}"
    cand.max_abs_error = round(worst, 6)
    cand.argmax_match = argmax_ok if job.bound.classifier else None
    cand.failure, cand.near_ties = failure, ties
    cand.status = "ok" if worst <= limit and argmax_ok else "inaccurate"


def decode_outputs(felts: list[list[str]], scales: list[int], shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    values = ezkl_calls.decode_values(felts, scales, [math.prod(shape) for shape in shapes])
    return [np.array(v, dtype=np.float64).reshape(shape) for v, shape in zip(values, shapes, strict=True)]
