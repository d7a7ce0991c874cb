"""The wheel as a user gets it, built once per test run from a clean clone of the committed files (the web app's
vendored modules are git-ignored: the package build makes them). ``tests/test_wheel.py`` installs it in a fresh
virtualenv; ``tests/test_image.py`` builds the container image from it."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def clean_wheel() -> Path:
    if shutil.which("git") is None or shutil.which("npm") is None:
        pytest.skip("git and npm are needed to build from a clean clone")
    work = Path(tempfile.mkdtemp(prefix="proofmarket-wheel-"))
    clone = work / "proofmarket"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)], check=True)
    assert not (clone / "src/proofmarket/api/static/app/vendor").exists()  # git-ignored: the build makes it
    out = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(clone)],
                   check=True, timeout=900)
    [built] = out.glob("proofmarket-*.whl")
    return built
