"""What the stateful property tests of the contracts share (``tests/properties``): how many sequences to run, and
one transaction tried (True when it went through, False when the chain refused it)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

from proofmarket.core.errors import ChainError


def examples(default: int) -> int:
    """The number of random sequences: a bounded number in the test run, more with PROOFMARKET_PROPERTY_EXAMPLES."""
    return int(os.environ.get("PROOFMARKET_PROPERTY_EXAMPLES", default))


def run_settings(default_examples: int, steps: int = 25, shrink: bool = True) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(max_examples=examples(default_examples), stateful_step_count=steps, deadline=None,
                    phases=phases, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def attempt(fn: Any, *args: Any, **kwargs: Any) -> bool:
    """Send one transaction: True when it went through; False when the chain refused it (a revert or a refused
    estimate), after which nothing may have moved: the invariants check it."""
    try:
        fn(*args, **kwargs)
        return True
    except ChainError:
        return False
