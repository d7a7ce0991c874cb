"""Same files, same id (P3-20): a model id is the CID of its manifest, so nothing time- or machine-dependent may be
in it. A validator that compiles the listed model's files itself (``compile --mode attested DIR``, in its own home,
at another time) gets the listed id: for a causal LM and for an attested ONNX model, with the clock moved in process and
in a CLI process whose clocks read a minute later. Manifests written before (with their compile time) still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from proofmarket.core.settings import Settings
from proofmarket.samples import sample_path
from proofmarket.systems.attested import compile as attested_compile
from proofmarket.systems.attested.documents import AttestedManifest
from proofmarket.systems.workspace import Workspace


class _Clock:
    """A ``datetime`` whose ``now`` is moved by ``shift`` (the attested compile's time source)."""

    shift = timedelta(0)

    @classmethod
    def now(cls, tz: Any = None) -> datetime:
        return datetime.now(tz) + cls.shift


def _compile(home: Path, model: Path, shift: timedelta, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    _Clock.shift = shift
    monkeypatch.setattr(attested_compile, "datetime", _Clock, raising=False)  # were compile to read the time
    ws = Workspace(Settings(home=home))
    try:
        return ws.compile_attested(model, name="same", max_tokens_cap=64)
    finally:
        ws.close()


@pytest.mark.parametrize("kind", ["causal-lm", "onnx"])
def test_the_same_files_compile_to_the_same_id_at_another_time_in_another_home(
        kind: str, lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = lm_dir if kind == "causal-lm" else sample_path("cnn")
    node_id, manifest = _compile(tmp_path / "node", model, timedelta(0), monkeypatch)
    validator_id, _ = _compile(tmp_path / "validator", model, timedelta(days=3, minutes=7), monkeypatch)
    assert validator_id == node_id
    stored = json.loads(Workspace(Settings(home=tmp_path / "node")).store.get(node_id))
    assert "created_at" not in stored and str(tmp_path) not in json.dumps(stored)  # no time, no local path
    assert "runtime" not in stored  # nor the library versions of the machine that compiled it
    assert manifest.kind == kind


def test_a_manifest_with_its_compile_time_still_loads(lm_id: str, attested_ws: Workspace, tmp_path: Path) -> None:
    doc = json.loads(attested_ws.store.get(lm_id))
    old = {**doc, "created_at": "2026-01-02T03:04:05+00:00",  # what compile wrote before
           "runtime": {"torch": "2.0.0", "python": "3.11.2", "device": "cpu"}}
    manifest = AttestedManifest.model_validate(old)
    assert manifest.weights.root == doc["weights"]["root"]
    assert manifest.model_dump(mode="json") == old  # serialised as stored: its id is unchanged
    assert AttestedManifest.model_validate(doc).model_dump(mode="json") == doc


LATER = """
import datetime, runpy, sys, time
SHIFT = float(sys.argv.pop(1))
real_time, real_ns = time.time, time.time_ns
time.time = lambda: real_time() + SHIFT
time.time_ns = lambda: real_ns() + int(SHIFT * 1e9)
class Later(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return super().now(tz) + datetime.timedelta(seconds=SHIFT)
    @classmethod
    def utcnow(cls):
        return super().utcnow() + datetime.timedelta(seconds=SHIFT)
datetime.datetime = Later
runpy.run_module("proofmarket.cli.main", run_name="__main__")
"""


@pytest.mark.slow
def test_a_validator_compiling_a_minute_later_gets_the_listed_id(lm_dir: Path, tmp_path: Path) -> None:
    """The CLI a validator runs, in its own home, a minute after the node compiled: its clocks (``time.time``,
    ``datetime.now``) read 61 s later, as a real minute's wait would (without the wait)."""
    def compile_in(home: Path, later_s: float) -> str:
        env = {**os.environ, "PROOFMARKET_HOME": str(home)}
        res = subprocess.run([sys.executable, "-c", LATER, str(later_s), "compile", str(lm_dir), "--mode",
                              "attested", "--json"], capture_output=True, text=True, env=env, timeout=600, check=False)
        assert res.returncode == 0, res.stderr
        model_id: str = json.loads(res.stdout)["model_id"]
        return model_id

    listed = compile_in(tmp_path / "node", 0)
    assert compile_in(tmp_path / "validator", 61) == listed
