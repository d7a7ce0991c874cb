"""The CLI end to end in a subprocess: compile, prove, verify and their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proofmarket.samples import sample_path

pytestmark = pytest.mark.slow


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROOFMARKET_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "proofmarket.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=600, check=False)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("clihome")
    res = run(home, "compile", str(sample_path("mlp")), "--sample", str(sample_path("mlp", "samples")), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["manifest"]["logrows"] <= 12
    assert doc["manifest"].get("batches", []) == []  # by default only the model's own circuit: batches when asked
    return home, doc["model_id"]


@pytest.fixture(scope="module")
def bundle_file(compiled: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    home, model_id = compiled
    out = tmp_path_factory.mktemp("bundles") / "bundle.json"
    res = run(home, "prove", model_id, "--input", str(sample_path("mlp", "input")), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "bundle cid:" in res.stdout and "output:" in res.stdout
    return out


def test_compile_prints_model_id_settings_and_accuracy(compiled: tuple[Path, str]) -> None:
    home, model_id = compiled
    res = run(home, "models", "--json")
    assert [m["id"] for m in json.loads(res.stdout)] == [model_id]


def test_verify_valid_bundle_exits_0(compiled: tuple[Path, str], bundle_file: Path) -> None:
    res = run(compiled[0], "verify", str(bundle_file))
    assert res.returncode == 0, res.stderr
    assert "valid" in res.stdout


def test_flipped_proof_byte_exits_1(compiled: tuple[Path, str], bundle_file: Path, tmp_path: Path) -> None:
    doc = json.loads(bundle_file.read_text())
    hex_ = doc["proof"]["hex"]
    doc["proof"]["hex"] = hex_[:200] + ("1" if hex_[200] == "0" else "0") + hex_[201:]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    res = run(compiled[0], "verify", str(bad), "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"]["code"] == "proof_invalid"


def test_missing_artifacts_exit_2(bundle_file: Path, tmp_path: Path) -> None:
    res = run(tmp_path / "empty-home", "verify", str(bundle_file))
    assert res.returncode == 2
    assert "artifact" in res.stderr.lower()


def test_export_and_verify_elsewhere_with_the_car(compiled: tuple[Path, str], bundle_file: Path,
                                                  tmp_path: Path) -> None:
    home, model_id = compiled
    car = tmp_path / "model.car"
    assert run(home, "export", model_id, "--out", str(car)).returncode == 0
    res = run(tmp_path / "other-home", "verify", str(bundle_file), "--car", str(car))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("args, code", [
    (["verify", "/nonexistent/bundle.json"], 2),
    (["prove", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "--input", "/nonexistent.json"], 2),
    (["compile", "/nonexistent.onnx", "--sample", "/nonexistent.json"], 2),
    (["compile", "x.onnx", "--sample", "y.json", "--privacy", "secret"], 2),
])
def test_usage_errors_exit_2_with_one_sentence(tmp_path: Path, args: list[str], code: int) -> None:
    res = run(tmp_path, *args)
    assert res.returncode == code
    assert res.stderr.strip().startswith("error (")


def test_bad_input_gets_its_error_code(compiled: tuple[Path, str], tmp_path: Path) -> None:
    home, model_id = compiled
    bad = tmp_path / "nan.json"
    bad.write_text('{"input_data": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}')
    res = run(home, "prove", model_id, "--input", str(bad), "--json")
    assert res.returncode == 2
    assert json.loads(res.stdout)["error"]["code"] == "input_not_finite"
