"""``make lint``'s environment rule: only ``core/`` reads the environment (``core/settings.py``'s ``Settings`` and
``env_value``); every other module takes its settings from there.

Run: ``python scripts/check_env.py`` (exit 1 and one line per read found outside ``src/proofmarket/core/``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

READ = re.compile(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(|\bfrom os import [^\n]*\b(environ|getenv)\b")
ALLOWED = "src/proofmarket/core/"


def env_reads(root: Path) -> list[str]:
    """Every line of ``root/src`` outside ``core/`` that reads the environment."""
    found: list[str] = []
    for path in sorted((root / "src").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if READ.search(line) and not line.lstrip().startswith("#"):
                found.append(f"{rel}:{number}: reads the environment outside core/ (use Settings or "
                             f"core.settings.env_value): {line.strip()[:80]}")
    return found


if __name__ == "__main__":
    problems = env_reads(Path(__file__).resolve().parents[1])
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)
