"""The sandbox (``core/sandbox``): a function on untrusted input runs in a capped child; each cap it hits comes back
as the caller's error naming that cap, a refusal comes back as the same code, and the parent's memory stays put."""

from __future__ import annotations

import time

import pytest

from proofmarket.core import sandbox
from proofmarket.core.errors import InvalidModel, ModelOverBudget, ProofMarketError

LIMITS = sandbox.Limits(memory_mb=300, cpu_s=2, wall_s=20)


def _over(hit: sandbox.LimitHit) -> ProofMarketError:
    return ModelOverBudget(hit.describe(), limit=hit.limit)


def allocate(mb: int) -> int:
    block = bytearray(mb * 1024 * 1024)
    return len(block)


def native_allocate(mb: int) -> int:
    import numpy as np

    return int(np.ones(mb * 1024 * 1024 // 8).sum())


def spin() -> None:
    while True:
        pass


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def refuse() -> None:
    raise InvalidModel("not a model", tensor="w")


def add(a: int, b: int) -> int:
    return a + b


def test_the_answer_comes_back() -> None:
    assert sandbox.run(add, 2, 3, limits=LIMITS, over_limit=_over) == 5


def test_a_refusal_comes_back_with_its_code_and_details() -> None:
    with pytest.raises(InvalidModel) as caught:
        sandbox.run(refuse, limits=LIMITS, over_limit=_over)
    assert caught.value.code == "invalid_model" and caught.value.details == {"tensor": "w"}


@pytest.mark.parametrize("fn", [allocate, native_allocate])
def test_memory_past_the_cap_is_the_memory_limit(fn: object) -> None:
    assert sandbox.run(fn, 50, limits=LIMITS, over_limit=_over) > 0  # under the cap: fine
    with pytest.raises(ModelOverBudget) as caught:
        sandbox.run(fn, 2048, limits=LIMITS, over_limit=_over)
    assert caught.value.details["limit"] == "memory"


def test_cpu_past_the_cap_is_the_cpu_limit() -> None:
    started = time.monotonic()
    with pytest.raises(ModelOverBudget) as caught:
        sandbox.run(spin, limits=LIMITS, over_limit=_over)
    assert caught.value.details["limit"] == "cpu"
    assert time.monotonic() - started < LIMITS.wall_s


def test_time_past_the_wall_clock_is_the_time_limit() -> None:
    with pytest.raises(ModelOverBudget) as caught:
        sandbox.run(sleep, 30, limits=sandbox.Limits(memory_mb=300, cpu_s=2, wall_s=1.5), over_limit=_over)
    assert caught.value.details["limit"] == "time"
