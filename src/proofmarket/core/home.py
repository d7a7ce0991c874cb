"""The data folder and its layout, without the settings' framework: ``Settings`` takes them from here, and a proof's
command (``cli/prove_cmd.py``) reads them without loading the settings."""

from __future__ import annotations

from pathlib import Path

DEFAULT_HOME = Path.home() / ".proofmarket"  # PROOFMARKET_HOME (or --home) unset
HOME_VARIABLE = "PROOFMARKET_HOME"


def store_dir(home: Path) -> Path:
    """The artifact store: models' files and proof bundles by CID."""
    return home / "store"


def srs_dir(home: Path) -> Path:
    """The SRS cache (ceremony files and dev SRS)."""
    return home / "srs"


def jobs_dir(home: Path) -> Path:
    """Each proof's scratch folder (removed when it ends)."""
    return home / "jobs"
