"""``make lint``'s coverage rule for the independence contracts: every package under ``payments/`` is a rail and every
package under ``systems/`` a proof system, and each must be named in its import-linter contract ("payment rails
never import each other", "proof systems never import each other" in ``pyproject.toml``). A rail or system added
later cannot import another by being left out of the list.

Run: ``python scripts/check_contracts.py`` (exit 1 and one line per package missing from its contract).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

#: The folder whose packages must be independent -> words that name its contract in pyproject.toml.
FAMILIES = {"payments": "payment rails never import each other", "systems": "proof systems never import each other"}


def missing(root: Path) -> list[str]:
    """Every package under ``src/proofmarket/<family>/`` that its family's independence contract does not name."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    found: list[str] = []
    for family, words in FAMILIES.items():
        contract = next((c for c in contracts if c.get("type") == "independence" and words in c["name"]), None)
        if contract is None:
            found.append(f"pyproject.toml: no independence contract '{words}'")
            continue
        named = set(contract["modules"])
        for init in sorted((root / "src" / "proofmarket" / family).glob("*/__init__.py")):
            package = f"proofmarket.{family}.{init.parent.name}"
            if package not in named:
                found.append(f"{init.parent.relative_to(root).as_posix()}: a package of {family}/ missing from the "
                             f"contract '{contract['name']}': add {package} to its modules")
    return found


def main() -> int:
    found = missing(Path(__file__).resolve().parents[1])
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
