"""The size rule ``make lint`` runs (``scripts/check_sizes.py``): holds for the tree, and catches what it forbids."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_sizes", ROOT / "scripts" / "check_sizes.py")
assert spec is not None and spec.loader is not None
check_sizes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_sizes)


def test_the_tree_keeps_the_rule() -> None:
    assert check_sizes.breaches(ROOT) == []


def test_a_module_past_the_limit_or_its_ceiling_is_caught(tmp_path: Path) -> None:
    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    (src / "small.py").write_text("x = 1\n" * 10)
    (src / "big.py").write_text("x = 1\n" * 11)
    (src / "old.py").write_text("x = 1\n" * 13)
    (src / "fixed.py").write_text("x = 1\n" * 5)
    over = {"src/pkg/old.py": 12, "src/pkg/fixed.py": 20}
    found = check_sizes.breaches(tmp_path, limit=10, over=over)
    assert any(line.startswith("src/pkg/big.py: 11 lines, over the limit of 10") for line in found)
    assert any(line.startswith("src/pkg/old.py: 13 lines, over its ceiling of 12") for line in found)
    assert any(line.startswith("src/pkg/fixed.py: 5 lines, no longer over 10") for line in found)
    assert not any("small.py" in line for line in found)
