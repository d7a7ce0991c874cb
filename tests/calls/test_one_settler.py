"""Settlement is written in one module: a call's settlement (settled, or settling while it is followed on chain) is
stored by the call runner's settle step only (``calls/runner.py``), which the node's one call settler runs for every
rail (x402 and its schemes, credits, escrow, a plugged-in rail: ``tests/lifecycle/test_lifecycle_toy.py`` and
``tests/intake/test_escrow_watcher.py`` assert the settler's thread and the book entries per rail)."""

from __future__ import annotations

import ast
from pathlib import Path

import proofmarket

SRC = Path(proofmarket.__file__).resolve().parent
WRITES = {"settled", "settling"}  # CallRepo's settlement writes


def _writers(root: Path = SRC) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
                found.setdefault(str(path.relative_to(root)), []).append(node.lineno)
    return found


def test_call_settlements_are_written_by_the_runners_settle_step_only() -> None:
    writers = _writers()
    assert set(writers) == {"calls/runner.py"}, writers


def test_the_guard_finds_a_second_writer(tmp_path: Path) -> None:
    (tmp_path / "intake").mkdir()
    (tmp_path / "intake" / "watcher.py").write_text("def answer(repo):\n    return repo.calls.settled('id', {})\n")
    (tmp_path / "calls.py").write_text("def settle(jobs):\n    jobs.settle('id')\n")  # another name: not a write
    assert _writers(tmp_path) == {"intake/watcher.py": [2]}
