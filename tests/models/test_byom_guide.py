"""docs/byom.md stays true: its Python recipes run as written (in order, in one folder) and what they export is
accepted by the model check; the commands and options it shows exist; the limits it states are the code's."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("skl2onnx")

from proofmarket import models  # noqa: E402
from proofmarket.cli.main import app  # noqa: E402
from proofmarket.models import ml_trees  # noqa: E402
from proofmarket.models.external import self_contained  # noqa: E402

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "byom.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S)


def test_the_python_recipes_run_and_what_they_export_is_accepted(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    with warnings.catch_warnings():  # the exporters' own deprecation chatter (pytest makes warnings errors)
        warnings.simplefilter("ignore")
        for block in _blocks("python"):
            exec(compile(block, "docs/byom.md", "exec"), scope)  # noqa: S102 (the guide's own code)
    assert (tmp_path / "net.onnx.data").is_file()  # the default exporter's weights file, beside the model
    accepted = {}
    for name in ("net.onnx", "net_legacy.onnx", "logistic.onnx", "forest.onnx"):
        with tempfile.TemporaryDirectory() as tmp:
            accepted[name] = models.load_model(self_contained(tmp_path / name, Path(tmp), models.MAX_MODEL_BYTES))
    assert accepted["logistic.onnx"].is_classifier and accepted["forest.onnx"].is_classifier
    assert any("ZipMap" in note for note in accepted["logistic.onnx"].notes)
    assert [o.shape for o in accepted["forest.onnx"].outputs] == [(1,), (1, 3)]
    assert callable(scope["list_and_register"])


def test_the_commands_and_options_it_shows_exist() -> None:
    runner = CliRunner()
    for line in (line for block in _blocks("bash") for line in block.splitlines() if "proofmarket " in line):
        words = line.split("proofmarket ", 1)[1].split()
        command = [w for w in words[:2] if not w.startswith("-") and w.islower() and "." not in w and w != "MODEL_ID"]
        helped = runner.invoke(app, [*command, "--help"], env={**os.environ, "COLUMNS": "200"})
        assert helped.exit_code == 0, line
        for option in (w for w in words if w.startswith("--")):
            assert option in helped.output, f"{option} of '{line.strip()}' is not an option of {command}"


def test_the_limits_it_states_are_the_codes() -> None:
    stated = f"depth {ml_trees.MAX_DEPTH}, {ml_trees.MAX_TREES} trees and {ml_trees.MAX_LEAVES:,} leaves"
    assert stated in GUIDE
