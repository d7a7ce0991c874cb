"""The anvil binary for tests that start their own chain: skip when it is missing, unless CI=true (then fail)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proofmarket.chain import find_anvil
from proofmarket.core.errors import RPCUnavailable


def anvil_or_skip() -> Path:
    """The anvil binary; skip when it is missing, unless CI=true (then fail)."""
    try:
        return find_anvil()
    except RPCUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and anvil is missing: {exc}")
        pytest.skip(f"anvil is not installed: {exc}")
