"""Environment reads live in core: the demo's knobs, read the way ``make demo`` and its test set them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from proofmarket.core.settings import DemoSettings


def test_demo_settings_read_the_demo_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROOFMARKET_HOME", str(tmp_path))
    monkeypatch.setenv("PROOFMARKET_DEMO_TIMEOUT_S", "500")
    monkeypatch.setenv("PROOFMARKET_DEMO_GRID", "quick")
    monkeypatch.setenv("PROOFMARKET_DEMO_PAYMENTS", "off")
    knobs = DemoSettings()
    assert (knobs.home, knobs.timeout_s, knobs.grid, knobs.payments) == (tmp_path, 500.0, "quick", "off")


def test_demo_settings_defaults_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOME", "DEMO_TIMEOUT_S", "DEMO_GRID", "DEMO_PAYMENTS"):
        monkeypatch.delenv(f"PROOFMARKET_{name}", raising=False)
    knobs = DemoSettings()
    assert (knobs.home, knobs.timeout_s, knobs.grid, knobs.payments) == (Path(".demo"), 1200.0, "full", "on")
    monkeypatch.setenv("PROOFMARKET_DEMO_PAYMENTS", "maybe")
    with pytest.raises(ValidationError):
        DemoSettings()
