"""The docs stay true to the code: every setting is in the configuration reference; the README gives the two
commands on its first screen."""

from __future__ import annotations

from pathlib import Path

from proofmarket.core.settings import FLAT_NAMES
from proofmarket.payments.exact.rail import X402Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "reference" / "configuration.md").read_text()  # generated from the settings


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in sorted(FLAT_NAMES | set(X402Settings.model_fields)):  # every PROOFMARKET_* variable the node reads
        assert f"`PROOFMARKET_{name.upper()}`" in REFERENCE, f"docs/reference lacks PROOFMARKET_{name.upper()}"


def test_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
