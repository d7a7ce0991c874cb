"""``make lint``'s size rule: no module of ``src/`` over 400 lines.

A module already over the limit is listed in ``OVER`` with the size it had when the rule came in: it may shrink,
never grow, and once it is back under the limit its entry must go (the rule says so). A new module over the
limit fails at once. Run: ``python scripts/check_sizes.py`` (exit 1 and one line per breach).
"""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 400
#: Modules over the limit when the rule came in (issue 38 splits them): their ceiling, never to be raised.
OVER: dict[str, int] = {}


def breaches(root: Path, limit: int = LIMIT, over: dict[str, int] | None = None) -> list[str]:
    """Every module under ``root/src`` past its ceiling, and every ``over`` entry no longer needed."""
    over = OVER if over is None else over
    found: list[str] = []
    sizes = {p.relative_to(root).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in sorted((root / "src").rglob("*.py"))}
    for path, lines in sizes.items():
        ceiling = over.get(path, limit)
        if lines > ceiling:
            found.append(f"{path}: {lines} lines, over {'its ceiling of ' if path in over else 'the limit of '}"
                         f"{ceiling}: split it (modules stay under {limit} lines)")
    for path, ceiling in over.items():
        lines = sizes.get(path)
        if lines is None or lines <= limit:
            found.append(f"{path}: {'gone' if lines is None else f'{lines} lines'}, no longer over {limit}: remove "
                         "its entry from OVER in scripts/check_sizes.py")
        elif lines < ceiling:
            found.append(f"{path}: {lines} lines, under its ceiling of {ceiling}: lower the ceiling in OVER to "
                         f"{lines} (a ceiling only goes down)")
    return found


def main() -> int:
    found = breaches(Path(__file__).resolve().parents[1])
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
