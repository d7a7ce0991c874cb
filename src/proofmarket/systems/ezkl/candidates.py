"""The tuner's vocabulary: the grid it searches (decompositions, scales, columns, rebase multipliers), what one
call costs (:class:`Objective`, with the verifier-gas fit), a :class:`Candidate` circuit and what it measured, the
:class:`AccuracyBound` a candidate must meet, and the :class:`TuningReport` of a search. The search is
``tuning.py``; the order it times and picks candidates in is ``ranking.py``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.systems.ezkl import ezkl_calls

DEFAULT_DECOMPOSITIONS: tuple[tuple[int, int], ...] = (
    (16384, 2), (1024, 2), (256, 2), (256, 3), (128, 3), (64, 4),
)
# a model climbs to 11 and 12 only where 10 misses the bound (the ladder stops at the coarsest accurate scale): a
# GPT-2-style block with erf GELU and 4 heads of 6 was 0.030 off at 10 against a bound of 0.028, 0.0072 at 12, on
# the same 2^18 rows
DEFAULT_SCALES: tuple[int, ...] = (6, 7, 10, 11, 12)
FLOOR_SCALE = 10  # the accuracy bound's floor: 2 steps of this scale, whatever finer scale a model climbs to
DEFAULT_COLUMNS: tuple[int, ...] = (1, 2, 4)
REBASE_MULTIPLIERS: tuple[int, ...] = (1, 2, 10)
MAX_LOGROWS = 20
WIDEN = 3  # the default grid tries more inner columns on this many of its cheapest one-column circuits
WITHIN = 2.0  # candidates within this factor of the cheapest estimated work are all timed (one per shape)
EZKL_DECOMPOSITION = (16384, 2)  # EZKL's default decomposition (and 2 inner columns)

#: Verification gas of EZKL's Solidity verifier (eth_estimateGas of ``verifyProof``: 21,000 intrinsic, calldata
#: and the pairing check) = GAS_BASE + GAS_PER_PROOF_BYTE x proof bytes + GAS_PER_INSTANCE x public instances,
#: fitted by ``python bench/verifier_gas.py`` over the sample models' circuits (bench/verifier_gas.md);
#: GAS_FIT_ERROR is the fit's largest relative error there.
GAS_BASE = 199_558.0
GAS_PER_PROOF_BYTE = 116.65
GAS_PER_INSTANCE = 648.0
GAS_FIT_ERROR = 0.029

#: Prove times that differ by less than this share of themselves (or a measured time's spread, when larger) are
#: the same time: the work model's error on small circuits, and a loaded 2-core machine moves one prove time by
#: 10-30 % between runs.
NOISE_FLOOR = 0.15
OBJECTIVES = ("balanced", "prove", "verify")


@dataclass(frozen=True)
class Objective:
    """What one call of the model costs, in US dollars, at stated prices (bench/prices.py states the chain's).

    cpu_usd_per_s      the node's CPU: a core at 0.05 USD an hour
    latency_usd_per_s  the caller's wait for the proof: a cent a second
    gas_gwei, eth_usd  the consumer's verification on chain (Base: 0.005 gwei, ETH at 3,000 USD)
    byte_usd           storing and sending the proof: 0.09 USD a GB
    """

    name: str = "balanced"
    cpu_usd_per_s: float = 0.05 / 3600
    latency_usd_per_s: float = 0.01
    gas_gwei: float = 0.005
    eth_usd: float = 3000.0
    byte_usd: float = 0.09e-9

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise UsageError(f"--objective is one of {', '.join(OBJECTIVES)}, not {self.name!r}")

    def usd(self, prove_s: float, gas: float, proof_bytes: float) -> float:
        return (prove_s * (self.cpu_usd_per_s + self.latency_usd_per_s)
                + gas * self.gas_gwei * 1e-9 * self.eth_usd + proof_bytes * self.byte_usd)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def predicted_gas(proof_bytes: int, instances: int) -> int:
    return int(round(GAS_BASE + GAS_PER_PROOF_BYTE * proof_bytes + GAS_PER_INSTANCE * instances))


@dataclass
class Candidate:
    decomp_base: int | None
    decomp_legs: int | None
    scale: int | None
    num_inner_cols: int | None
    logrows: int | None = None
    num_rows: int | None = None
    rebase: int | None = None  # the scale-rebase multiplier calibration picked
    lookups: int | None = None  # lookup and range-check tables the circuit needs (each one a lookup argument)
    const_columns: int | None = None  # fixed columns its constants (fixed weights) fill at its logrows
    hash_rows: int | None = None  # rows of its Poseidon hashing (hashed input or weights): a floor on its rows
    max_abs_error: float | None = None
    argmax_match: bool | None = None
    prove_s_predicted: float | None = None  # from the circuit's work (predict.py's fit): the same on any machine
    proof_bytes: int | None = None  # of a timed candidate's proof
    instances: int | None = None  # public instances (inputs, outputs, commitments) of a timed candidate
    verify_gas: int | None = None  # predicted from proof_bytes and instances (GAS_* above)
    cost_usd: float | None = None  # the objective's price of one call (timed candidates)
    status: str = "pending"  # ok | inaccurate | failed: ...
    # measured (machine-dependent, never in the manifest): median prove seconds of `prove_runs` proofs, spread
    prove_s: float | None = None
    prove_s_spread: float | None = None
    prove_runs: int = 0
    setup_s: float | None = None
    prove_s_estimated: float | None = None
    settings_path: Path | None = field(default=None, repr=False)
    compiled_path: Path | None = field(default=None, repr=False)
    keys: tuple[Path, Path] | None = field(default=None, repr=False)  # (vk, pk) of a timed candidate
    proof_path: Path | None = field(default=None, repr=False)  # its last timed proof

    evm_check: str | None = None  # accepted (gas) | refused: why | not checked: why (set by compile)
    evm_gas: int | None = None  # verifyProof measured on a local EVM (eth_estimateGas)
    failure: str | None = None  # an inaccurate candidate's first failed check: which sample, by how much
    near_ties: list[int] = field(default_factory=list)  # samples whose class is within quantisation noise

    MEASURED = ("prove_s", "prove_s_spread", "prove_runs", "setup_s", "prove_s_estimated", "cost_usd", "evm_check",
                "evm_gas", "failure", "near_ties")

    @property
    def label(self) -> str:
        if self.decomp_base is None:
            return "ezkl-default"
        return f"b{self.decomp_base}x{self.decomp_legs}-s{self.scale}-c{self.num_inner_cols}"

    @property
    def timed(self) -> bool:
        return self.prove_s is not None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        for path in ("settings_path", "compiled_path", "keys", "proof_path"):
            data.pop(path)
        data["label"] = self.label
        return data

    def identity(self) -> dict[str, object]:
        """What goes into the manifest: everything but the measurements."""
        return {k: v for k, v in self.to_dict().items() if k not in self.MEASURED}


#: The absolute floor of the accuracy bound, in quantisation steps of the finest scale searched: a
#: fixed-point circuit at scale s rounds each value to 2^-s, so no candidate can promise less than that.
FLOOR_STEPS = 2
EZKL_DEFAULT_SCALE = 7


@dataclass
class AccuracyBound:
    """Default: max abs error <= 1% of the sample outputs' range; same argmax for classifiers. The limit
    never goes below ``FLOOR_STEPS`` quantisation steps of the finest scale searched (2 x 2^-10 ~ 0.002 on
    the default grid: ``FLOOR_SCALE``), so one sample or a constant output does not demand an error of 1e-06."""

    relative: float = 0.01
    classifier: bool = False

    def limit(self, reference: list[np.ndarray], finest_scale: int = FLOOR_SCALE) -> float:
        values = [r for r in reference if not is_label(r)] or reference  # a label's range says nothing of scores
        flat = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in values])  # bool outputs too
        span = float(flat.max() - flat.min()) if flat.size else 0.0
        return max(self.relative * span, FLOOR_STEPS * 2.0 ** -finest_scale)


@dataclass
class TuningReport:
    candidates: list[Candidate]
    picked: Candidate
    error_limit: float
    objective: Objective = field(default_factory=Objective)
    search_s: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The manifest's ``tuning``: the same for the same file and samples on any machine."""
        return {
            "picked": self.picked.label,
            "objective": self.objective.to_dict(),
            "error_limit": self.error_limit,
            "gas_model": {"base": GAS_BASE, "per_proof_byte": GAS_PER_PROOF_BYTE, "per_instance": GAS_PER_INSTANCE,
                          "max_rel_error": GAS_FIT_ERROR, "source": "bench/verifier_gas.py (eth_estimateGas fit)"},
            "noise_floor": NOISE_FLOOR,
            "candidates": [c.identity() for c in self.candidates],
        }

    def measurements(self) -> dict[str, object]:
        """The compile's report: each timed candidate's measured prove time with its spread, and the search."""
        return {
            "picked": self.picked.label,
            "search_s": self.search_s,
            "candidates": [{"label": c.label, **{k: getattr(c, k) for k in Candidate.MEASURED}}
                           for c in self.candidates if c.timed or c.prove_s_estimated is not None],
        }


def not_met(candidates: list[Candidate], limit: float, classifier: bool) -> str:
    """Why no candidate passed, in one sentence: the closest one's failed check (which sample, by how much) and what
    to do."""
    measured = [c for c in candidates if c.failure]
    if not measured:
        failed = next((c.status for c in candidates if c.status.startswith("failed")), "every candidate failed")
        return f"no circuit settings could be built for this model ({failed})"
    best = min(measured, key=lambda c: (c.max_abs_error or float("inf")))
    hint = ("drop or replace that sample, raise --max-error, or state the task (--task regression checks the "
            "error only)" if classifier else "drop or replace that sample, or raise --max-error (a share of the "
            "outputs' range)")
    return (f"no circuit settings kept the outputs within {limit:.4g} of onnxruntime on the samples: the closest "
            f"({best.label}) failed on {best.failure}; {hint}{_finer_helps(measured)}")


def _finer_helps(measured: list[Candidate]) -> str:
    """A note when the error still shrinks at the grid's finest scale: the rounding of fixed point sets it."""
    by_scale: dict[int, float] = {}
    for c in measured:
        if c.scale is not None and c.max_abs_error is not None:
            by_scale[c.scale] = min(by_scale.get(c.scale, float("inf")), c.max_abs_error)
    finest = max(DEFAULT_SCALES)
    coarser = [s for s in by_scale if s < finest]
    if finest not in by_scale or not coarser or by_scale[finest] >= by_scale[max(coarser)]:
        return ""
    return (f". The error still shrinks at the finest scale searched ({by_scale[max(coarser)]:.4g} at "
            f"{max(coarser)}, {by_scale[finest]:.4g} at {finest}): the model's values are small against a step of "
            f"2^-{finest} (a normalisation's variance is scaled into range at compile, the rest is not): give inputs "
            "of larger magnitude")


def is_label(values: object) -> bool:
    """An integer output (a class label, as scikit-learn classifiers give it): checked for equality, not error."""
    return np.asarray(values).dtype.kind in "iu"


def top2_gap(values: np.ndarray) -> float:
    """The distance between the two largest values (how far a class is from the next one)."""
    flat = np.sort(np.asarray(values, dtype=np.float64).ravel())
    return float(flat[-1] - flat[-2]) if flat.size >= 2 else float("inf")


def domain_failure(points: list[list[list[float]]], cand: Candidate, workdir: Path) -> str | None:
    """The first point of the input domain whose witness the candidate cannot compute (its decomposition or lookup
    ranges too small for the values that point drives through the model), in words; None when every one holds."""
    assert cand.compiled_path is not None
    for i, point in enumerate(points):
        inp = workdir / "domain-point.json"
        inp.write_text(json.dumps({"input_data": point}))
        try:
            ezkl_calls.gen_witness(inp, cand.compiled_path, workdir / "witness.json")
        except ProofMarketError:
            return f"the witness fails at point {i} of the input domain (its values outgrow these ranges)"
    return None


def covering(points: list[list[list[float]]], workdir: Path, accurate: list[Candidate], keep: int) -> list[Candidate]:
    """The first ``keep`` of ``accurate`` (cheapest first) whose witness holds at every point of the input domain;
    one that fails is marked inaccurate with why (a call inside the domain would fail on it). Checked in cost order,
    only as far as needed: each point is a witness per candidate."""
    kept: list[Candidate] = []
    for cand in accurate:
        if len(kept) >= keep:
            break
        outside = domain_failure(points, cand, workdir) if points else None
        if outside is None:
            kept.append(cand)
        else:
            cand.status, cand.failure = "inaccurate", outside
    return kept


def default_candidates(decomps: tuple[tuple[int, int], ...] = DEFAULT_DECOMPOSITIONS,
                       scales: tuple[int, ...] = DEFAULT_SCALES,
                       columns: tuple[int, ...] = DEFAULT_COLUMNS) -> list[Candidate]:
    """The whole grid, plus EZKL's own defaults: the search can never pick worse than what EZKL does alone."""
    grid = [Candidate(b, legs, s, c) for b, legs in decomps for s in scales for c in columns]
    return [*grid, ezkl_default_candidate()]


def ezkl_default_candidate() -> Candidate:
    """EZKL's own defaults with 'resources' calibration: the baseline we compare against."""
    return Candidate(None, None, None, None)


def larger_than_predicted(candidates: list[Candidate], best: Candidate, predicted: int) -> str:
    """Why the cheapest accurate circuit is larger than the dry run predicted: the smaller ones' first failed check."""
    smaller = [c for c in candidates if c.logrows is not None and c.logrows < (best.logrows or 0) and c.failure]
    why = f"the smaller circuits were not accurate enough ({smaller[0].label}: {smaller[0].failure})" if smaller \
        else "no candidate of the predicted size could be built or calibrated"
    return f"the cheapest accurate circuit has logrows {best.logrows}, over the {predicted} predicted: {why}"
