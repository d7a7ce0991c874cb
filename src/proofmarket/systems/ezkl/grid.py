"""The default grid's order (``tuning._default_grid``): which candidate circuits are evaluated, and which are
skipped, given ``run`` (evaluate one candidate: settings, calibration, compile, accuracy on the samples).

Two searches share it:

- ``thorough``: every decomposition climbs the scales from the coarsest, and the ``WIDEN`` cheapest one-column
  circuits get two and four inner columns;
- ``quick`` (compile's default): once a decomposition found its coarsest accurate scale and every coarser scale it
  tried was only *inaccurate* (its quantisation too coarse, not a failure), the next decompositions start at that
  scale: a decomposition sets the range checks, not the fixed-point rounding, so a scale too coarse for one is too
  coarse for every one (measured on a 784-56-10 MLP: the same error at each scale across all six decompositions,
  0.040 at 6, 0.062 at 7, 0.0056 at 10); the other small decompositions only while the rows do not set the circuit's
  size (``rows_bound``: an MLP 784-56-10's rows are 56,512-59,276 at logrows 16 whichever of the five it takes, so
  four of its eleven calibrations changed nothing); and only the cheapest one-column circuit is widened.
"""

from __future__ import annotations

from collections.abc import Callable

from proofmarket.systems.ezkl.candidates import (
    DEFAULT_DECOMPOSITIONS,
    DEFAULT_SCALES,
    EZKL_DECOMPOSITION,
    WIDEN,
    Candidate,
)
from proofmarket.systems.ezkl.ranking import cost_rank, hash_bound

Run = Callable[[Candidate], Candidate]
SEARCHES = ("quick", "thorough")


def settled_scale(tried: list[Candidate]) -> int | None:
    """The coarsest scale a small decomposition was accurate at, when every coarser scale tried (at any small
    decomposition) was only inaccurate; None otherwise (nothing accurate yet, or a coarser scale failed: then the
    ladder starts from the coarsest again)."""
    ok = [c.scale for c in tried if c.status == "ok" and c.decomp_base is not None and c.scale is not None]
    if not ok:
        return None
    scale = min(ok)
    coarser = [c for c in tried if c.decomp_base is not None and c.scale is not None and c.scale < scale]
    return scale if all(c.status == "inaccurate" for c in coarser) else None


def ladder(run: Run, tried: list[Candidate], base: int, legs: int, quick: bool = False,
           scales: tuple[int, ...] = DEFAULT_SCALES) -> None:
    """One decomposition at one inner column, scales coarse to fine: a finer one only while the coarser one is
    inaccurate (after a failure only while nothing is accurate yet); ``quick``: from the settled scale."""
    start = settled_scale(tried) if quick else None
    for scale in scales:
        if start is not None and scale < start:
            continue
        status = run(Candidate(base, legs, scale, 1)).status
        if status == "ok" or (status != "inaccurate" and any(c.status == "ok" for c in tried)):
            return


def first_step(run: Run, tried: list[Candidate], quick: bool = False, first_only: bool = False,
               scales: tuple[int, ...] = DEFAULT_SCALES) -> None:
    """Step 1 of the default grid: each small decomposition at one inner column and the coarsest accurate scale;
    stops once an accurate circuit's rows are its hashing's (``first_only``, the dry run, and a ``quick`` search:
    once an accurate circuit's computation, not its decomposition's range table, fills more than a quarter of it:
    another decomposition changes only the rows of its non-linear steps, a few per cent on the models measured)."""
    for base, legs in DEFAULT_DECOMPOSITIONS:
        if (base, legs) == EZKL_DECOMPOSITION:
            continue
        ladder(run, tried, base, legs, quick, scales)
        if any(hash_bound(c) for c in tried) or ((first_only or quick) and any(rows_bound(c) for c in tried)):
            break  # the hash (or the rows) sets the size: another decomposition cannot make it much smaller


def rows_bound(cand: Candidate) -> bool:
    """An accurate circuit whose own rows fill more than a quarter of it (a range table does not set its size)."""
    return (cand.status == "ok" and cand.logrows is not None and cand.num_rows is not None
            and cand.num_rows > 2 ** (cand.logrows - 2))


def widen(run: Run, tried: list[Candidate], quick: bool = False) -> None:
    """Step 3: two, then four inner columns for the cheapest one-column circuits whose rows set their size (one of
    them when ``quick``, else ``WIDEN``)."""
    ones = sorted((c for c in tried if c.status == "ok" and c.num_inner_cols == 1 and c.decomp_base is not None),
                  key=cost_rank)
    for one in ones[:1 if quick else WIDEN]:
        assert one.logrows is not None and one.num_rows is not None
        if one.num_rows <= 2 ** (one.logrows - 2) or hash_bound(one):
            continue  # a table or a hash sets the size, not the rows
        two = run(Candidate(one.decomp_base, one.decomp_legs, one.scale, 2))
        if two.status != "ok" or (two.num_rows or 0) >= one.num_rows:
            break  # the rows do not spread over columns: no wider circuit is smaller
        if two.logrows is not None and two.logrows < one.logrows:
            run(Candidate(one.decomp_base, one.decomp_legs, one.scale, 4))
