"""The suite's command-line options, here at the root so that every process reads them (an xdist worker started
without test paths loads this file, not ``tests/conftest.py``, before it parses its options). The suite's root
conftest is ``tests/conftest.py``."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the soak lane (tests/soak: repeated end-to-end scenarios, minutes each)")
    parser.addoption("--mutants", action="store_true", default=False,
                     help="also run the mutation lane (each contract invariant's search finding its planted bug)")
    parser.addoption("--corpus", action="store_true", default=False,
                     help="also run the corpus lane (the costliest default exports compiled with compile's own search)")
    parser.addoption("--times", metavar="DIR", default=None,
                     help="record test phases and fixture setups in DIR (scripts/test_times.py renders them)")
