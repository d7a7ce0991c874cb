"""The package as users get it: a wheel built from a clean clone (committed files only, so the web app's vendored
modules are built by the package build itself) carries /app whole, the migrations, the samples, the contracts'
artifacts and the LICENSE, and names no undeclared import (the SIWE parser is the project's own)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or shutil.which("npm") is None:
        pytest.skip("git and npm are needed to build from a clean clone")
    clone = tmp_path_factory.mktemp("clone") / "proofmarket"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)], check=True)
    assert not (clone / "src/proofmarket/api/static/app/vendor").exists()  # git-ignored: the build makes it
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(clone)], check=True, timeout=900)
    [built] = out.glob("proofmarket-*.whl")
    return built


def test_the_wheel_carries_what_a_user_runs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("proofmarket/api/static/app/vendor/ezkl_bg.wasm", "proofmarket/api/static/app/vendor/x402-pay.js",
                   "proofmarket/api/static/app/vendor/chain.js", "proofmarket/api/static/app/index.html",
                   "proofmarket/db/migrations/script.py.mako", "proofmarket/samples/mlp.onnx",
                   "proofmarket/chain/artifacts/ModelRegistry.json", "proofmarket/core/siwe_message.py"):
        assert needed in names, needed
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert any(n.startswith("proofmarket/db/migrations/versions/0014") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    from proofmarket import __version__

    requires = [line.lower() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    assert f"Version: {__version__}" in text and requires and not any("siwe" in line for line in requires)
