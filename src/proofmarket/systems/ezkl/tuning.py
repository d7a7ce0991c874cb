"""Settings search: the fastest circuit whose outputs stay within an accuracy bound.

EZKL's defaults decompose values with base 16384 in 2 legs, which forces a 2^15-row range table; a
smaller base with more legs, with the right scale and column count, often fits the same model in
2^9-2^11 rows and proves 10-40x faster. We try a grid of (decomposition base, legs, scale, inner
columns), let EZKL calibrate each to its smallest logrows, keep those whose witness outputs on the
owner's samples stay within the bound against onnxruntime, then time real proofs for the cheapest
few and pick the fastest. Every candidate is reported.

Calibration may also pick the scale-rebase multiplier (when to divide a product back to the input
scale). EZKL only offers 1 and 10; 10 overflows a small decomposition base, leaving 1, which rescales
after every product. Offering 2 as well halves the CNN's rows (6632 -> 3688 at base 1024, one column),
so we pass REBASE_MULTIPLIERS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from proofmarket.core.errors import AccuracyNotMet, ProofMarketError
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider

DEFAULT_DECOMPOSITIONS: tuple[tuple[int, int], ...] = (
    (16384, 2), (1024, 2), (256, 2), (256, 3), (128, 3), (64, 4),
)
DEFAULT_SCALES: tuple[int, ...] = (6, 7, 10)
DEFAULT_COLUMNS: tuple[int, ...] = (1, 2, 4)
REBASE_MULTIPLIERS: tuple[int, ...] = (1, 2, 10)
MAX_LOGROWS = 20


@dataclass
class Candidate:
    decomp_base: int | None
    decomp_legs: int | None
    scale: int | None
    num_inner_cols: int | None
    logrows: int | None = None
    num_rows: int | None = None
    rebase: int | None = None  # the scale-rebase multiplier calibration picked
    max_abs_error: float | None = None
    argmax_match: bool | None = None
    prove_s: float | None = None
    prove_s_estimated: float | None = None
    status: str = "pending"  # ok | inaccurate | failed: ...
    settings_path: Path | None = field(default=None, repr=False)
    compiled_path: Path | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        if self.decomp_base is None:
            return "ezkl-default"
        return f"b{self.decomp_base}x{self.decomp_legs}-s{self.scale}-c{self.num_inner_cols}"

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("settings_path")
        data.pop("compiled_path")
        data["label"] = self.label
        return data


#: The absolute floor of the accuracy bound, in quantisation steps of the finest scale searched: a
#: fixed-point circuit at scale s rounds each value to 2^-s, so no candidate can promise less than that.
FLOOR_STEPS = 2
EZKL_DEFAULT_SCALE = 7


@dataclass
class AccuracyBound:
    """Default: max abs error <= 1% of the sample outputs' range; same argmax for classifiers. The limit
    never goes below ``FLOOR_STEPS`` quantisation steps of the finest scale searched (2 x 2^-10 ~ 0.002 on
    the default grid), so one sample or a constant output does not demand an error of 1e-06."""

    relative: float = 0.01
    classifier: bool = False

    def limit(self, reference: list[np.ndarray], finest_scale: int = max(DEFAULT_SCALES)) -> float:
        flat = np.concatenate([r.ravel() for r in reference])
        span = float(flat.max() - flat.min()) if flat.size else 0.0
        return max(self.relative * span, FLOOR_STEPS * 2.0 ** -finest_scale)


@dataclass
class TuningReport:
    candidates: list[Candidate]
    picked: Candidate
    error_limit: float

    def to_dict(self) -> dict[str, object]:
        return {
            "picked": self.picked.label,
            "error_limit": self.error_limit,
            "candidates": [c.to_dict() for c in self.candidates],
        }


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
    timed: int = 3  # how many of the cheapest accurate candidates get real timed proofs


def default_candidates(decomps: tuple[tuple[int, int], ...] = DEFAULT_DECOMPOSITIONS,
                       scales: tuple[int, ...] = DEFAULT_SCALES,
                       columns: tuple[int, ...] = DEFAULT_COLUMNS) -> list[Candidate]:
    """The grid, plus EZKL's own defaults: the search can never pick worse than what EZKL does alone."""
    grid = [Candidate(b, legs, s, c) for b, legs in decomps for s in scales for c in columns]
    return [*grid, ezkl_default_candidate()]


def ezkl_default_candidate() -> Candidate:
    """EZKL's own defaults with 'resources' calibration: the baseline we compare against."""
    return Candidate(None, None, None, None)


def search(job: TuningJob, candidates: list[Candidate] | None = None, progress: Progress = _noop) -> TuningReport:
    candidates = candidates if candidates is not None else default_candidates()
    finest = max((c.scale if c.scale is not None else EZKL_DEFAULT_SCALE for c in candidates), default=7)
    limit = job.bound.limit([o for outs in job.reference for o in outs], finest)
    data = job.workdir / "calibration.json"
    data.write_text(json.dumps(calibration_input(job.samples)))
    measured: dict[tuple[object, ...], Candidate] = {}
    for i, cand in enumerate(candidates):
        progress(f"candidate {i + 1}/{len(candidates)} {cand.label}")
        try:
            build_candidate(job, cand, data, index=i)
            same = measured.get(_arithmetic(cand))
            if same is None:
                _measure_accuracy(job, cand, limit)
                measured[_arithmetic(cand)] = cand
            else:  # only the layout differs (inner columns): the witness outputs are the same
                cand.max_abs_error, cand.argmax_match, cand.status = same.max_abs_error, same.argmax_match, same.status
        except ProofMarketError as exc:
            cand.status = f"failed: {exc.message[:160]}"
    accurate = sorted((c for c in candidates if c.status == "ok"), key=cost_rank)
    if not accurate:
        raise AccuracyNotMet(
            f"no circuit settings kept the outputs within {limit:.4g} of onnxruntime on the samples",
            candidates=[c.to_dict() for c in candidates],
        )
    for cand in to_time(accurate, job.timed):
        progress(f"timing {cand.label} (logrows {cand.logrows})")
        cand.prove_s = time_proof(job, cand)
    timed = [c for c in accurate if c.prove_s is not None]
    ref = min(timed, key=lambda c: c.prove_s or 0.0)
    per_work = float(np.exp(np.mean([np.log((c.prove_s or 1e-9) / work(c)) for c in timed])))
    for cand in candidates:  # an estimate from the candidate's own rows and columns, fitted on every timed one
        if cand.prove_s is None and cand.logrows is not None:
            cand.prove_s_estimated = round(per_work * work(cand), 4)
    return TuningReport(candidates, ref, limit)


def to_time(accurate: list[Candidate], timed: int, within: float = 2.0, cap: int = 6) -> list[Candidate]:
    """Which accurate candidates get a real timed proof: the cheapest by estimated work, then one of each
    other circuit shape (logrows x inner columns) whose work is within ``within`` x of the cheapest (the
    work model ranks rows against columns only roughly: a 4-column circuit at 2^14 rows can beat a
    1-column one at 2^16), up to ``max(cap, timed)``. Candidates of a shape already timed are estimated."""
    if not accurate:
        return []
    best = work(accurate[0])
    picked: list[Candidate] = []
    shapes: set[tuple[int | None, int | None]] = set()
    for cand in accurate:
        shape = (cand.logrows, cand.num_inner_cols)
        if shape in shapes or work(cand) > within * best:
            continue
        picked.append(cand)
        shapes.add(shape)
    for cand in accurate[:timed]:  # the cheapest few are timed whatever their shape
        if cand not in picked:
            picked.append(cand)
    return picked[:max(cap, timed)]


def work(cand: Candidate) -> float:
    """Estimated proving work: 2^logrows rows times the inner columns committed per row. Measured
    on the CNN: c1 at logrows 13, c2 at 12 and c4 at 11 all prove in about 1 s, while logrows alone
    would rank c4 four times cheaper. EZKL's default column count (2) stands in when unset."""
    return float(2 ** (cand.logrows or 30)) * (cand.num_inner_cols or 2)


def cost_rank(cand: Candidate) -> tuple[float, int, int]:
    """Cheapest first: least work, then fewer columns (smaller proof and verifier), then fewer rows."""
    return (work(cand), cand.num_inner_cols or 2, cand.num_rows or 0)


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
    )
    ezkl_calls.gen_settings(job.model, settings, ra)
    scales = [cand.scale] if cand.scale is not None else None
    rebase = list(REBASE_MULTIPLIERS) if cand.decomp_base is not None else None  # None: EZKL's defaults
    ezkl_calls.calibrate(data, job.model, settings, scales=scales, max_logrows=MAX_LOGROWS,
                         rebase_multipliers=rebase)
    ezkl_calls.compile_circuit(job.model, compiled, settings)
    meta = json.loads(settings.read_text())
    cand.logrows = int(meta["run_args"]["logrows"])
    cand.num_rows = int(meta["num_rows"])
    cand.rebase = int(meta["run_args"]["scale_rebase_multiplier"])
    cand.scale = cand.scale if cand.scale is not None else int(meta["run_args"]["input_scale"])
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
    worst, argmax_ok = 0.0, True
    for i, (sample, reference) in enumerate(zip(job.samples, job.reference, strict=True)):
        inp = job.workdir / f"sample-{i}.json"
        inp.write_text(json.dumps({"input_data": sample}))
        witness = ezkl_calls.gen_witness(inp, cand.compiled_path, job.workdir / "witness.json")
        outputs = decode_outputs(witness["outputs"], scales, [r.shape for r in reference])
        for got, want in zip(outputs, reference, strict=True):
            worst = max(worst, float(np.max(np.abs(got - want))))
            if job.bound.classifier and int(np.argmax(got)) != int(np.argmax(want)):
                argmax_ok = False
    cand.max_abs_error = round(worst, 6)
    cand.argmax_match = argmax_ok if job.bound.classifier else None
    cand.status = "ok" if worst <= limit and argmax_ok else "inaccurate"


def decode_outputs(felts: list[list[str]], scales: list[int], shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    return [
        np.array([ezkl_calls.felt_to_float(f, scale) for f in tensor], dtype=np.float64).reshape(shape)
        for tensor, scale, shape in zip(felts, scales, shapes, strict=True)
    ]


def time_proof(job: TuningJob, cand: Candidate, repeats: int = 1) -> float:
    """Key setup and one real proof for this candidate on the first sample; returns prove seconds."""
    assert cand.compiled_path is not None and cand.logrows is not None
    srs = job.srs.get(cand.logrows).path
    vk, pk = job.workdir / "timing.vk", job.workdir / "timing.pk"
    ezkl_calls.setup(cand.compiled_path, vk, pk, srs)
    inp = job.workdir / "sample-0.json"
    ezkl_calls.gen_witness(inp, cand.compiled_path, job.workdir / "timing-witness.json", vk, srs)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ezkl_calls.prove(job.workdir / "timing-witness.json", cand.compiled_path, pk,
                         job.workdir / "timing-proof.json", srs)
        best = min(best, time.perf_counter() - start)
    return round(best, 4)
