"""EZKL's thread count in a prover process: rayon reads ``RAYON_NUM_THREADS`` when its pool starts."""

from __future__ import annotations

import os

VARIABLE = "RAYON_NUM_THREADS"


def use_threads(threads: int | None) -> None:
    """Prove with ``threads`` threads in this process (before EZKL starts its pool); an operator's own
    ``RAYON_NUM_THREADS`` wins; None leaves EZKL's default (every core)."""
    if threads is not None and VARIABLE not in os.environ:
        os.environ[VARIABLE] = str(threads)


def threads_in_use() -> str | None:
    """What this process proves with (None: EZKL's default, every core)."""
    return os.environ.get(VARIABLE)
