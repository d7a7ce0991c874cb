"""What a user installs, built once per test run as ``make release`` builds it (``scripts/release.py``: a clean
clone of the committed files, the sdist, the wheel built from it, twine-checked, and the TypeScript client's npm
tarball; the image is ``tests/test_image.py``'s own build from this wheel). ``tests/test_wheel.py`` installs the
wheel in a fresh virtualenv; ``tests/test_release.py`` checks the rest."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pytest
from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def release_artifacts() -> dict[str, Path]:
    """The release's files by kind: ``sdist``, ``wheel``, ``npm`` and ``sums`` (the SHA256SUMS file)."""
    if shutil.which("git") is None or shutil.which("npm") is None:
        pytest.skip("git and npm are needed to build from a clean clone")
    release = load_script(Path("scripts/release.py"), "proofmarket_release")
    out = Path(tempfile.mkdtemp(prefix="proofmarket-release-")) / "dist"
    files, _ = release.release(out, image=False)
    by_kind = {"sdist": [f for f in files if f.name.endswith(".tar.gz")], "wheel": [f for f in files if
               f.suffix == ".whl"], "npm": [f for f in files if f.suffix == ".tgz"]}
    assert all(len(found) == 1 for found in by_kind.values()), files
    return {**{kind: found[0] for kind, found in by_kind.items()}, "sums": out / "SHA256SUMS"}


def clean_wheel() -> Path:
    return release_artifacts()["wheel"]
