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


def test_verify_loads_what_a_check_needs_and_nothing_of_the_prover(compiled: tuple[Path, str],
                                                                    bundle_file: Path) -> None:
    """Issue 72: ``proofmarket verify`` checks a 24 ms proof; before, it loaded the prover, the tuner and numpy
    with them (594 modules, ~1.1 CPU-seconds). The modules it loads now, counted in its own process."""
    heavy = ("numpy", "torch", "onnxruntime", "onnx", "web3", "sqlalchemy", "fastapi", "uvicorn",
             "proofmarket.systems.ezkl.prover", "proofmarket.systems.ezkl.tuning", "proofmarket.systems.ezkl.worker")
    code = ("import sys\n"
            f"sys.argv = ['proofmarket', 'verify', {str(bundle_file)!r}]\n"
            "from proofmarket.cli.entry import run\n"
            "try:\n    run()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print('LOADED', [m for m in {heavy!r} if m in sys.modules], len(sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PROOFMARKET_HOME": str(compiled[0])})
    assert res.returncode == 0 and "valid" in res.stdout, res.stderr
    loaded, count = res.stdout.split("LOADED ", 1)[1].rsplit(" ", 1)
    assert loaded == "[]" and int(count) < 500, res.stdout


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


def _console_script(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    """The console script's entry (``cli.entry``) run with ``args``: exit code, stdout, stderr, and which of the
    command line's framework, the settings, numpy and pycparser (cffi's parser: pycryptodome through cffi) it
    loaded."""
    code = ("import sys, json; sys.argv = ['proofmarket', *json.loads(sys.argv[1])]\n"
            "from proofmarket.cli.entry import run\n"
            "try:\n    run()\n    code = 0\nexcept SystemExit as exc:\n    code = exc.code or 0\n"
            "print('LOADED', code, ','.join(m for m in ('typer', 'pydantic_settings', 'proofmarket.core.settings', "
            "'proofmarket.systems.workspace', 'numpy', 'pycparser') if m in sys.modules), file=sys.stderr)")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    res = subprocess.run([sys.executable, "-c", code, json.dumps([*args, "--home", str(home)])], capture_output=True,
                         text=True, env={**full_env, **(env or {})}, timeout=600, check=False, cwd=home)
    last = res.stderr.strip().splitlines()[-1].split(" ")
    assert last[0] == "LOADED", res.stderr
    return int(last[1]), res.stdout, res.stderr, [m for m in (last[2:] or [""])[0].split(",") if m]


def test_the_plain_prove_runs_without_typer_or_the_settings_and_answers_as_the_app(compiled: tuple[Path, str]) -> None:
    home, model_id = compiled
    argv = ["prove", model_id, "--input", str(sample_path("mlp", "input")), "--json"]
    code, out, _, loaded = _console_script(home, *argv)
    assert code == 0 and loaded == []  # issue 57: a proof's command loads the prover, not the command line's app
    # (nor numpy: its input is checked as flat float32 values; nor cffi's C parser: keccak through ctypes)
    lean = json.loads(out)
    app = run(home, *argv)  # the app's prove (python -m proofmarket.cli.main), the same body
    assert app.returncode == 0, app.stderr
    full = json.loads(app.stdout)
    assert lean.keys() == full.keys() and lean["output"] == full["output"] and lean["mode"] == full["mode"] == "proven"
    assert lean["bundle"]["model"] == full["bundle"]["model"]

    code, out, _, loaded = _console_script(home, "prove", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
                                           "--input", str(sample_path("mlp", "input")), "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "unknown_model" and "proofmarket.core.settings" \
        not in loaded  # an error of the plain form: its code and sentence, without the app

    # a setting to check: the app runs the command, and refuses the setting in one sentence
    code, out, err, loaded = _console_script(home, *argv, env={"PROOFMARKET_PROVER_WORKERS": "many"})
    assert code == 2 and "proofmarket.core.settings" in loaded and "PROOFMARKET_PROVER_WORKERS" in out + err
