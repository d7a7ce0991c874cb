"""The docs' runnable blocks: a fenced block whose previous line is ``<!-- runnable -->`` is run by a test
(``tests/test_docs_site.py`` names which test runs each page's blocks)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def runnable_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of each block marked runnable in ``page``."""
    return re.findall(r"<!-- runnable -->\n```(\w+)\n(.*?)```", page.read_text(), flags=re.S)
