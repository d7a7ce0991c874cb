"""The attested commands in a subprocess: compile --mode attested, generate, verify [--reexecute], exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROOFMARKET_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "proofmarket.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=600, check=False)


@pytest.fixture(scope="module")
def compiled(lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("cli-attested")
    res = run(home, "compile", str(lm_dir), "--mode", "attested", "--max-tokens-cap", "64", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["mode"] == "attested" and doc["manifest"]["generation"]["max_tokens_cap"] == 64
    return home, doc["model_id"]


def test_generate_then_verify_and_re_execute(compiled: tuple[Path, str], tmp_path: Path) -> None:
    home, model_id = compiled
    listed = run(home, "models")
    assert model_id in listed.stdout and "attested" in listed.stdout
    out = tmp_path / "bundle.json"
    res = run(home, "generate", model_id, "--prompt", "the market", "--max-tokens", "24", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "attested" in res.stdout and "not re-executed" in res.stdout
    plain = run(home, "verify", str(out), "--json")
    assert plain.returncode == 0, plain.stderr
    doc = json.loads(plain.stdout)
    assert doc["mode"] == "attested" and doc["reexecuted"] is False
    assert any("nothing was re-executed" in c for c in doc["checks"])
    again = run(home, "verify", str(out), "--reexecute", "--threads", "1")
    assert again.returncode == 0, again.stderr
    assert "attested" in again.stdout and "reproduced" in again.stdout

    car = tmp_path / "model.car"  # another machine: the bundle checked against the owner's CAR, the model then held
    assert run(home, "export", model_id, "--out", str(car)).returncode == 0
    elsewhere = tmp_path / "validator-home"
    checked = run(elsewhere, "verify", str(out), "--car", str(car), "--json")
    assert checked.returncode == 0, checked.stderr
    assert model_id in run(elsewhere, "models").stdout  # held: a validator here declares and votes on it

    bundle = json.loads(out.read_text())
    bundle["output"]["tokens"][3] += 1
    out.write_text(json.dumps(bundle))
    bad = run(home, "verify", str(out), "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["error"]["code"] == "proof_invalid"


def test_over_the_cap_and_bad_directories_exit_2_with_their_code(compiled: tuple[Path, str], lm_dir: Path,
                                                                 tmp_path: Path) -> None:
    home, model_id = compiled
    res = run(home, "generate", model_id, "--prompt", "hi", "--max-tokens", "65", "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["error"]["code"] == "max_tokens_over_cap"
    broken = tmp_path / "broken"
    shutil.copytree(lm_dir, broken)
    (broken / "model.safetensors").unlink()
    res = run(home, "compile", str(broken), "--mode", "attested", "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["error"]["code"] == "model_files_missing"
    res = run(home, "compile", str(lm_dir), "--json")  # proven mode without samples
    assert res.returncode == 2 and "--sample" in res.stdout
