"""The data folder and its layout, without the settings' framework: ``Settings`` takes them from here, and a proof's
command (``cli/prove_cmd.py``) reads them without loading the settings."""

from __future__ import annotations

import os
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


def home_from_environment(explicit: Path | None = None) -> Path:
    """The data folder: ``explicit`` (``--home``), else PROOFMARKET_HOME, else ``DEFAULT_HOME`` (as ``Settings``
    reads it where no ``.env`` sets it: see ``plain_environment``)."""
    return explicit or Path(os.environ.get(HOME_VARIABLE) or DEFAULT_HOME)


def plain_environment(cwd: Path | None = None) -> bool:
    """Nothing for the settings to read but the data folder: no ``PROOFMARKET_*`` variable besides
    ``PROOFMARKET_HOME`` (set to a folder), no ``.env`` file in ``cwd`` (the settings read one there)."""
    for name, value in os.environ.items():
        if name.startswith("PROOFMARKET_") and (name != HOME_VARIABLE or not value):
            return False
    return not ((cwd or Path.cwd()) / ".env").exists()


def without_pydantic_plugins() -> None:
    """A one-shot command (``proofmarket prove``'s plain form) skips pydantic's search of every installed package's
    entry points for plug-ins (10-20 ms at its first model), unless PYDANTIC_DISABLE_PLUGINS says otherwise."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
