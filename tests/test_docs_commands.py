"""The operator's and owner's guides stay true to the command line: every `proofmarket ...` line in their shell
blocks names a command that exists, with options that command takes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proofmarket.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ["docs/deploy.md", "docs/byom.md"]


def _command_lines(text: str) -> list[str]:
    found, language = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            language = None if language is not None else (line[3:].strip() or "text")
        elif language in ("sh", "bash", "console", "text") and re.match(r"^(?:[A-Z_]+=\S+ )*proofmarket \w",
                                                                        line.strip()):
            found.append(line.strip())
    return found


@pytest.mark.parametrize("guide", GUIDES)
def test_every_command_line_names_a_command_and_its_options(guide: str) -> None:
    lines = _command_lines((ROOT / guide).read_text())
    assert lines, guide
    runner = CliRunner()
    for line in lines:
        words = line.split("proofmarket ", 1)[1].split("#")[0].split()
        command: list[str] = []
        for word in words:
            if word.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            helped = runner.invoke(app, [*command, word, "--help"], env={**os.environ, "COLUMNS": "200"})
            if helped.exit_code != 0:
                break
            command.append(word)
        assert command, line
        helped = runner.invoke(app, [*command, "--help"], env={**os.environ, "COLUMNS": "200"})
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in helped.output, f"{guide}: {option} is not an option of 'proofmarket {' '.join(command)}'"
