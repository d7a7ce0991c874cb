"""The references in docs/reference come from the code and stay current; every error code, setting and command has
its description (a new one without it fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from script_module import load_script

ROOT = Path(__file__).resolve().parents[1]
gen = load_script(ROOT / "scripts" / "gen_reference.py", "proofmarket_gen_reference")


def test_the_references_are_current() -> None:
    assert gen.main(["--check"]) == 0, "run: python scripts/gen_reference.py"


def test_every_code_setting_and_command_has_its_description() -> None:
    rows = [line for page in ("errors.md", "configuration.md") for line in gen.PAGES[page]().splitlines()
            if line.startswith("| `")]
    assert len(rows) > 200
    undescribed = [row.split("|")[1].strip() for row in rows if row.rstrip().endswith("|  |")]
    assert undescribed == []
    commands = re.findall(r"^## (proofmarket .+)\n\n(.*)$", gen.cli_md(), flags=re.M)
    assert len(commands) > 60 and all(help_text.strip() for _, help_text in commands)
