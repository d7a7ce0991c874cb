"""The package as users get it: a wheel built from a clean clone (committed files only, so the web app's vendored
modules are built by the package build itself) carries /app whole, the migrations, the samples, the contracts'
artifacts and the LICENSE, and names no undeclared import (the SIWE parser is the project's own)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(released_wheel: Path) -> Path:
    return released_wheel


def test_the_wheel_carries_what_a_user_runs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("proofmarket/api/static/app/vendor/ezkl_bg.wasm", "proofmarket/api/static/app/vendor/x402-pay.js",
                   "proofmarket/api/static/app/vendor/chain.js", "proofmarket/api/static/app/index.html",
                   "proofmarket/db/migrations/script.py.mako", "proofmarket/samples/mlp.onnx",
                   "proofmarket/chain/artifacts/ModelRegistry.json", "proofmarket/core/siwe_message.py",
                   "proofmarket/api/static/app/vendor/swagger-ui-bundle.js", "proofmarket/api/static/app/redoc.html",
                   "proofmarket/solidity/InferenceConsumer.sol",  # the consumer bases a dApp imports
                   "proofmarket/solidity/AttestedConsumer.sol"):
        assert needed in names, needed
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert any(n.startswith("proofmarket/db/migrations/versions/0014") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    from proofmarket import __version__

    requires = [line.lower() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    assert f"Version: {__version__}" in text and requires and not any("siwe" in line for line in requires)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the repository with the wheel and its declared dependencies only."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
                    "--disable-pip-version-check", str(wheel)], check=True,
                   timeout=1500)
    return venv


def test_outside_the_repository_every_module_imports_and_a_model_compiles_with_its_verifier_checked(
        installed: Path, tmp_path: Path) -> None:
    python, cli = str(installed / "bin" / "python"), str(installed / "bin" / "proofmarket")
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PROOFMARKET_TOOLS_CACHE":
           str(tmp_path / "tools")}
    version = subprocess.run([cli, "--version"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    from proofmarket import __version__

    assert version.stdout.strip() == __version__
    every = ("import importlib, pkgutil, proofmarket\n"
             "skip = ('proofmarket.db.migrations',)\n"  # alembic's env runs migrations when imported
             "for m in pkgutil.walk_packages(proofmarket.__path__, 'proofmarket.'):\n"
             "    if not m.name.startswith(skip) and not m.name.endswith('__main__'):\n"
             "        importlib.import_module(m.name)\n")
    imported = subprocess.run([python, "-c", every], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr[-2000:]
    sample = subprocess.run([python, "-c", "from proofmarket.samples import sample_path; print(sample_path('mlp'))"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    compiled = subprocess.run([cli, "compile", sample, "--sample", sample.replace(".onnx", ".samples.json"),
                               "--home", str(tmp_path / "home"), "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    import json

    doc = json.loads(compiled.stdout)
    picked = doc["manifest"]["tuning"]["picked"]
    check = next(c for c in doc["measurements"]["candidates"] if c["label"] == picked)["evm_check"]
    assert str(check).startswith("accepted"), check  # solc and anvil came from the tools cache, really checked


def test_outside_the_repository_the_demo_runs_and_says_what_the_missing_extra_skips(installed: Path,
                                                                                     tmp_path: Path) -> None:
    """``proofmarket demo`` from the wheel with its declared dependencies only (no torch: the attested extra is not
    installed): the proven story, paid and verified on chain, exit 0, and one line saying what was skipped."""
    import os

    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PROOFMARKET_DEMO_GRID": "quick",
           "PROOFMARKET_TOOLS_CACHE": str(installed.parent / "tools"), "PROOFMARKET_HOME": str(tmp_path / "demo"),
           "COLUMNS": "200", **{k: v for k, v in os.environ.items() if k.endswith(("_CA_CERTS", "CERT_FILE"))}}
    done = subprocess.run([str(installed / "bin" / "proofmarket"), "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "proven, verified on chain" in done.stdout and "pip install 'proofmarket[attested]'" in done.stdout, \
        done.stdout[-5000:]
