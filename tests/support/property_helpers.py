"""What the stateful property tests of the contracts share (``tests/properties``): how many sequences to run, and
one transaction tried (True when it went through, False when the chain refused it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings

from proofmarket.chain.artifacts import Artifact, load_artifact_file
from proofmarket.core.errors import ChainError

ROOT = Path(__file__).resolve().parents[2]


def examples(default: int) -> int:
    """The number of random sequences: a bounded number in the test run, more with PROOFMARKET_PROPERTY_EXAMPLES."""
    return int(os.environ.get("PROOFMARKET_PROPERTY_EXAMPLES", default))


def run_settings(default_examples: int, steps: int = 25, shrink: bool = True) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(max_examples=examples(default_examples), stateful_step_count=steps, deadline=None,
                    phases=phases, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def attempt(fn: Any, *args: Any, **kwargs: Any) -> bool:
    """Send one transaction: True when it went through; False when the chain refused it (a revert or a refused
    estimate), after which nothing may have moved: the invariants check it."""
    try:
        fn(*args, **kwargs)
        return True
    except ChainError:
        return False


def planted(tmp_path: Path, contract: str, find: str, replace: str, *, runs: int = 200, via_ir: bool = False
            ) -> Artifact:
    """A copy of ``contracts/<contract>.sol`` with one planted bug (``find``, which must be in it once, replaced by
    ``replace``), compiled alone by the project's compiler script (``runs``, ``via_ir``: as ``make contracts``
    compiles it, or what it imports: the court needs via-IR)."""
    folder = tmp_path / "contracts"
    shutil.copytree(ROOT / "contracts", folder)
    source = folder / f"{contract}.sol"
    text = source.read_text()
    assert text.count(find) == 1, f"the mutation's anchor is not in {contract}.sol once: {find!r}"
    source.write_text(text.replace(find, replace))
    out = tmp_path / f"{contract}.json"
    subprocess.run(["node", str(ROOT / "scripts" / "compile_contracts.js"), "--single", str(source), "--contract",
                    contract, "--out", str(out), "--runs", str(runs), *(["--via-ir", "true"] if via_ir else [])],
                   check=True, capture_output=True, timeout=600)
    return load_artifact_file(out)
