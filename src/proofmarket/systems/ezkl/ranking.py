"""The order of the tuner's grid, apart from the search: which accurate candidates are timed and how often
(the work model, the search budget), which one no other beats on every count, and which the objective picks once
timed (the work model's prove times unless a measurement overrules one; times within their noise are equal).
Pure functions of :class:`Candidate` values: the search in ``tuning.py`` calls them, tests call them alone."""

from __future__ import annotations

import numpy as np

from proofmarket.systems.ezkl.candidates import (
    NOISE_FLOOR,
    WITHIN,
    Candidate,
    Objective,
)


def hash_bound(cand: Candidate) -> bool:
    """An accurate circuit whose size its Poseidon hashing sets: the hash takes all its rows, more than half of
    2^logrows (not a range table, which a smaller base would shrink). The hash's rows neither depend on the
    decomposition nor spread over inner columns."""
    hashed = cand.hash_rows or 0
    return (cand.status == "ok" and cand.logrows is not None and hashed >= (cand.num_rows or 0)
            and hashed > 2 ** (cand.logrows - 1))


def floor_work(decomp_base: int, columns: int) -> float:
    """The least work (``work``) a circuit with this decomposition can have: its range table needs
    ``decomp_base`` rows and the blinding rows, so at least 2^(bits of the base) rows."""
    bits = decomp_base.bit_length()
    return float(2 ** bits) * (columns + FIXED_COLUMNS) * bits


def timing_budget(cheapest: Candidate) -> float:
    """Seconds of key setup and proofs worth spending on timing: more for a model whose proofs cost more (a
    better pick saves that on every call), at least enough for two small shapes, at most ten minutes."""
    predicted = cheapest.prove_s_predicted or 0.1
    return min(600.0, max(3.0, 20.0 * predicted))


def repeats_for(cand: Candidate, alone: bool = False) -> int:
    """Proofs per timed candidate: three for a median and a spread, two when a proof is long, one when the
    candidate is timed ``alone`` (nothing to compare it with; the compile's self-check needs that one proof)."""
    if alone:
        return 1
    return 3 if (cand.prove_s_predicted or 0.0) <= 2.0 else 2


def to_time(accurate: list[Candidate], timed: int, within: float = WITHIN, cap: int = 6,
            budget_s: float = float("inf")) -> list[Candidate]:
    """Which accurate candidates get keys and timed proofs: the cheapest by estimated work, then one of each
    other circuit shape (logrows x inner columns) whose work is within ``within`` x of the cheapest (the work
    model ranks rows against columns only roughly), and the cheapest one-column shape (the smallest proof,
    the least gas), up to ``cap`` shapes and the budget of predicted seconds, at least ``timed`` shapes
    unless every other candidate is dominated (:func:`dominates`: it cannot be faster, smaller or cheaper to
    verify). Candidates of a shape already timed are estimated. The list does not depend on the objective."""
    if not accurate:
        return []
    best = work(accurate[0])
    picked: list[Candidate] = []
    shapes: set[tuple[int | None, int | None]] = set()

    def add(cand: Candidate, at: int | None = None) -> None:
        shape = (cand.logrows, cand.num_inner_cols)
        if shape not in shapes and not any(dominates(p, cand) for p in picked):
            picked.insert(len(picked) if at is None else at, cand)
            shapes.add(shape)

    for cand in accurate:
        if work(cand) < within * best:
            add(cand)
    narrow = next((c for c in accurate if c.num_inner_cols == 1), None)
    if narrow is not None:
        add(narrow, at=1)
    for cand in accurate:  # at least `timed` shapes, however far apart in work
        if len(picked) >= timed:
            break
        add(cand)
    chosen: list[Candidate] = []
    spent = 0.0
    for cand in picked[:max(cap, timed)]:
        cost = (cand.prove_s_predicted or 0.0) * (1.0 + repeats_for(cand))  # key setup ~ one proof
        if len(chosen) >= max(timed, 1) and spent + cost > budget_s:
            continue
        chosen.append(cand)
        spent += cost
    return chosen


def dominates(a: Candidate, b: Candidate) -> bool:
    """``a`` beats ``b`` on every count that decides a call's cost: no more rows (logrows), inner columns,
    lookup arguments or constant columns, so its proof is no slower, no larger and no dearer to verify (the
    proof's size follows its columns and lookups, not its rows). ``b`` is then never worth timing."""
    if a is b or a.logrows is None or b.logrows is None:
        return False
    counts_a = (a.logrows, a.num_inner_cols or 2, a.lookups or 0, a.const_columns or 0)
    counts_b = (b.logrows, b.num_inner_cols or 2, b.lookups or 0, b.const_columns or 0)
    return counts_a != counts_b and all(x <= y for x, y in zip(counts_a, counts_b, strict=True))


def pick(timed: list[Candidate], objective: Objective) -> Candidate:
    """The objective's choice among timed candidates (the first of :func:`ranked`)."""
    return ranked(timed, objective)[0]


def ranked(timed: list[Candidate], objective: Objective) -> list[Candidate]:
    """Timed candidates, the objective's best first. A candidate's time (:func:`reference_time`) is its work
    model's prediction unless its measurement overrules it, and the fastest time it is within noise of: candidates
    whose times overlap are ordered by gas, then proof size (then their label: the order never depends on the order
    of the list). A load that comes and goes while candidates are timed thus never moves the pick."""
    times = {id(c): reference_time(c, machine_load([d for d in timed if d is not c] or [c])) for c in timed}

    def effective(c: Candidate) -> float:
        t, noise = times[id(c)]
        return min(u for u, n in times.values() if abs(u - t) <= noise + n)

    def key(c: Candidate) -> tuple[float, ...]:
        gas, size, t = float(c.verify_gas or 0), float(c.proof_bytes or 0), effective(c)
        c.cost_usd = objective.usd(t, gas, size)
        if objective.name == "prove":
            return (t, gas, size)
        if objective.name == "verify":
            return (gas, size, t)
        return (c.cost_usd, gas, size)

    return sorted(timed, key=lambda c: (key(c), c.label))


#: A measured time more than this factor off its work model's prediction, once divided by the load the other timed
#: candidates show, overrules the prediction: the model is within a few per cent on the shapes it was fitted on, and
#: a load that comes and goes while candidates are timed moves one candidate's median against the others' by at most
#: the busy processes per core (4 on a 2-core machine running the suite: 4.7x for the sample MLP's slowest shape).
OVERRULES = 8.0


def reference_time(cand: Candidate, load: float) -> tuple[float, float]:
    """A timed candidate's prove time on the reference machine and its noise: the work model's prediction (noise
    ``NOISE_FLOOR`` of it) while the measurement, divided by ``load`` (the other timed candidates' measured over
    predicted: :func:`ranked`), is within ``OVERRULES`` of it, else the measurement (noise its spread, never less
    than ``NOISE_FLOOR``): a shape the model misjudges."""
    assert cand.prove_s is not None
    measured, predicted = cand.prove_s / load, cand.prove_s_predicted
    if predicted and 1.0 / OVERRULES <= measured / predicted <= OVERRULES:
        return predicted, NOISE_FLOOR * predicted
    return measured, max((cand.prove_s_spread or 0.0) / load, NOISE_FLOOR * measured)


def machine_load(timed: list[Candidate]) -> float:
    """How much slower this machine proves now than the reference machine the work model was fitted on
    (predict.py): the geometric mean of measured over predicted prove time. Dividing by it puts every measured
    time in the reference machine's seconds, so the weight of time against gas in the objective does not move
    with the load (a machine twice as loaded doubles every time, not the cost of waiting)."""
    ratios = [(c.prove_s or 0.0) / c.prove_s_predicted for c in timed
              if c.prove_s and c.prove_s_predicted]
    return float(np.exp(np.mean(np.log(ratios)))) if ratios else 1.0


FIXED_COLUMNS = 2 / 3  # the columns a proof commits to whatever its inner columns (fixed, lookup, permutation)


def work(cand: Candidate) -> float:
    """Estimated proving work: 2^logrows rows times the columns committed per row, the inner columns and the
    ``FIXED_COLUMNS`` that do not widen with them, times logrows (the FFTs' n log n). Fitted on LeNet-5's circuit
    (b16384x2-s10, raw EZKL on this 2-core machine): 1 inner column at logrows 20 proves in 167 s, 2 at 19 in
    126 s, 4 at 18 in 106 s (peak memory 15.1, 11.4, 9.4 GB), within 2 % of this model each; rows times columns
    alone ranked the three equal. EZKL's default column count (2) stands in when unset."""
    logrows = cand.logrows or 30
    return float(2 ** logrows) * ((cand.num_inner_cols or 2) + FIXED_COLUMNS) * logrows


def cost_rank(cand: Candidate) -> tuple[float, int, int, str]:
    """Cheapest first: least work, then fewer columns (smaller proof and verifier), then fewer rows."""
    return (work(cand), cand.num_inner_cols or 2, cand.num_rows or 0, cand.label)


def gas_rank(cand: Candidate) -> tuple[int, float, int, str]:
    """Least verification gas first, for a quick search whose objective is ``verify`` (it times one candidate): the
    proof's size, so its gas, follows its columns and lookups, not its rows; then the least work."""
    return (cand.num_inner_cols or 2, work(cand), cand.lookups or 0, cand.label)
