"""A sliced model whose slices together miss the accuracy bound is compiled again at a finer scale: far enough
finer for the error it missed by (rounding halves per bit of scale), since every slice is compiled again, and the
bound's floor stays two steps of scale 10 when the grid reaches finer scales."""

from __future__ import annotations

import numpy as np
import pytest

from proofmarket.core.errors import AccuracyNotMet
from proofmarket.systems.ezkl.candidates import DEFAULT_SCALES, AccuracyBound
from proofmarket.systems.ezkl.sliced_compile import _finer

# (scale missed at, error / bound, the scale compiled next): 1.5 x 1.09 needs 1 bit, 1.5 x 2.5 = 3.75 needs 2,
# 1.5 x 40 = 60 needs 6 (past the grid: its finest), 1.5 x 3 = 4.5 needs 3 (7 -> 10 is 3 bits)
CASES = [(10, 1.09, 11), (10, 2.5, 12), (10, 40.0, 12), (7, 1.2, 10), (7, 3.0, 10), (6, 1.0, 7), (11, 1.3, 12)]


@pytest.mark.parametrize(("scale", "over", "then"), CASES)
def test_an_end_to_end_miss_moves_as_many_bits_finer_as_it_missed_by(scale: int, over: float, then: int) -> None:
    assert DEFAULT_SCALES[_finer(scale, AccuracyNotMet("missed"), over)] == then


def test_a_miss_at_the_finest_scale_is_the_error() -> None:
    error = AccuracyNotMet("the slices together miss the accuracy bound")
    with pytest.raises(AccuracyNotMet, match="together miss"):
        _finer(max(DEFAULT_SCALES), error, 1.1)


def test_the_bound_floor_is_two_steps_of_scale_10_whatever_the_grid_reaches() -> None:
    assert max(DEFAULT_SCALES) > 10  # the grid climbs past 10 where 10 misses
    assert AccuracyBound().limit([np.array([0.25, 0.25])]) == pytest.approx(2 * 2.0 ** -10)
