"""What the stateful property tests of the contracts share (``tests/properties``): how many sequences to run, and
one transaction tried (True when it went through, False when the chain refused it)."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import INITIALIZE_RULE_MARKER, INVARIANT_MARKER, RuleBasedStateMachine

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


def replay(machine: type[RuleBasedStateMachine], steps: Callable[[Any], None]) -> None:
    """Run one fixed sequence on ``machine`` as hypothesis runs a generated one: every invariant checked after each
    step once the machine's ``initialize`` rules have run, ``teardown`` at the end. ``steps`` gets the machine (each
    method call on it a step) and is a counterexample the search once found against a planted bug, written as
    hypothesis printed it: a regression test that costs one sequence, where the search that finds it costs hundreds
    (the mutation lane)."""
    state = machine()
    try:
        steps(_Checked(state))
    finally:
        state.teardown()


def replay_both(client: Any, real: Callable[[], type[RuleBasedStateMachine]],
                bugged: Callable[[], type[RuleBasedStateMachine]], steps: Callable[[Any], None], says: str) -> None:
    """The counterexample ``steps`` passes on the real contract's machine (``real`` builds its world; the chain is
    then reverted to before it) and fails on the planted copy's (``bugged``) with the invariant's words ``says``."""
    before = client.rpc("evm_snapshot", [])
    replay(real(), steps)
    client.rpc("evm_revert", [before])
    with pytest.raises(AssertionError, match=says):
        replay(bugged(), steps)


class _Checked:
    """A machine whose method calls are steps: each is followed by every invariant of its class."""

    def __init__(self, state: RuleBasedStateMachine) -> None:
        self._state = state
        members = inspect.getmembers(type(state))
        self._invariants = [name for name, member in members if getattr(member, INVARIANT_MARKER, None) is not None]
        self._starting = {name for name, member in members
                          if getattr(member, INITIALIZE_RULE_MARKER, None) is not None}
        assert self._invariants, f"{type(state).__name__} has no invariant to check"

    def __getattr__(self, name: str) -> Callable[..., Any]:
        member = getattr(self._state, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            result = member(*args, **kwargs)
            self._starting.discard(name)
            if not self._starting:  # hypothesis checks invariants once every initialize rule has run
                for invariant in self._invariants:  # from the class: hypothesis may shadow a name on the instance
                    getattr(type(self._state), invariant)(self._state)
            return result
        return step


def attempt(fn: Any, *args: Any, **kwargs: Any) -> bool:
    """Send one transaction: True when it went through; False when the chain refused it (a revert or a refused
    estimate), after which nothing may have moved: the invariants check it."""
    try:
        fn(*args, **kwargs)
        return True
    except ChainError:
        return False


# compiled planted copies, named by the hash of everything that makes them: when a contract, a mutation or the compiler
# changes, the copy is compiled again (minutes) and its new file should be committed (the old one is then unused)
PLANTED_CACHE = ROOT / "tests" / "support" / "planted"


def planted(tmp_path: Path, contract: str, find: str, replace: str, *, runs: int = 200, via_ir: bool = False
            ) -> Artifact:
    """A copy of ``contracts/<contract>.sol`` with one planted bug (``find``, which must be in it once, replaced by
    ``replace``), compiled alone by the project's compiler script (``runs``, ``via_ir``: as ``make contracts``
    compiles it, or what it imports: the court needs via-IR). A copy compiled before from the same sources, options
    and compiler is read from ``PLANTED_CACHE`` (its name is their hash): the court's compile via IR takes minutes
    on CI's two cores."""
    folder = tmp_path / "contracts"
    shutil.copytree(ROOT / "contracts", folder)
    source = folder / f"{contract}.sol"
    text = source.read_text()
    assert text.count(find) == 1, f"the mutation's anchor is not in {contract}.sol once: {find!r}"
    source.write_text(text.replace(find, replace))
    cached = PLANTED_CACHE / f"{contract}-{_planted_key(folder, contract, runs, via_ir)}.json"
    if cached.is_file():
        return load_artifact_file(cached)
    out = tmp_path / f"{contract}.json"
    subprocess.run(["node", str(ROOT / "scripts" / "compile_contracts.js"), "--single", str(source), "--contract",
                    contract, "--out", str(out), "--runs", str(runs), *(["--via-ir", "true"] if via_ir else [])],
                   check=True, capture_output=True, timeout=600)
    PLANTED_CACHE.mkdir(exist_ok=True)
    part = cached.with_name(f"{cached.name}.{os.getpid()}.part")  # whole or absent: another worker may read it
    shutil.copyfile(out, part)
    os.replace(part, cached)
    return load_artifact_file(out)


def _planted_key(folder: Path, contract: str, runs: int, via_ir: bool) -> str:
    """The hash of a planted copy's sources (every contract it may import), its options and the compiler (the
    script and solc's version)."""
    digest = hashlib.sha256(f"{contract}:{runs}:{via_ir}".encode())
    for path in sorted(folder.rglob("*.sol")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update((ROOT / "scripts" / "compile_contracts.js").read_bytes())
    digest.update(json.loads((ROOT / "node_modules" / "solc" / "package.json").read_text())["version"].encode())
    return digest.hexdigest()[:24]
