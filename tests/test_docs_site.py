"""The docs site builds in strict mode (no broken link, anchor or page left out of the nav), its search finds every
error code and every setting, the README fits the first screens and links only into what exists, and every block the
docs mark runnable (``<!-- runnable -->`` on the line before its fence) is run by a test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import ROOT, runnable_blocks

from proofmarket.core.errors import error_codes
from proofmarket.core.settings import FLAT_NAMES
from proofmarket.payments.exact.rail import X402Settings

README = ROOT / "README.md"
#: the tests that run the docs' runnable blocks: page -> the test that runs its blocks
RUNNABLE = {
    "docs/quickstart.md": "tests/test_quickstart.py",
    "docs/guides/consumers.md": "tests/payments/batch/test_readme_examples.py",  # the SDK and the OpenAI client
    "docs/guides/owners.md": "tests/payments/batch/test_readme_examples.py",  # a listing from the SDK
    "docs/guides/agents.md": "tests/payments/batch/test_readme_examples.py",  # an x402 MCP agent
    "docs/guides/typescript.md": "tests/clients/test_ts_client.py",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.is_file():
        pytest.skip("mkdocs is not installed (make setup installs it)")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, text=True,
                           capture_output=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-4000:]
    assert "WARNING" not in built.stderr, built.stderr[-4000:]
    return out


def test_the_site_builds_strict_and_its_search_finds_every_code_and_setting(site: Path) -> None:
    index = json.loads((site / "search" / "search_index.json").read_text())
    text = " ".join(doc.get("text", "") + " " + doc.get("title", "") for doc in index["docs"])
    missing_codes = [code for code in error_codes() if code not in text]
    assert missing_codes == []
    settings = {f"PROOFMARKET_{name.upper()}" for name in FLAT_NAMES | set(X402Settings.model_fields)}
    assert sorted(s for s in settings if s not in text) == []
    assert (site / "quickstart" / "index.html").is_file() and (site / "reference" / "http-api" / "index.html").is_file()


def test_the_readme_fits_the_first_screens_and_links_to_what_exists() -> None:
    text = README.read_text()
    assert len(text.encode()) < 15_000
    first_screen = "\n".join(text.splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target


def test_every_runnable_block_is_run_by_a_test() -> None:
    marked = {str(p.relative_to(ROOT)): runnable_blocks(p) for p in [README, *sorted((ROOT / "docs").rglob("*.md"))]}
    pages = {page for page, blocks in marked.items() if blocks}
    assert pages == set(RUNNABLE), "a page with runnable blocks needs its test in RUNNABLE (and that test)"
    for page, test in RUNNABLE.items():
        assert (ROOT / test).is_file(), (page, test)
        assert {lang for lang, _ in marked[page]} <= {"sh", "python", "ts"}
    assert shutil.which("bash")
