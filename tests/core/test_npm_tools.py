"""The JavaScript tools outside a checkout: the pins are package.json's, a complete cache is used as is, and with no
Node.js the command says what to install (exit 2) instead of failing later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofmarket.core import npm_tools
from proofmarket.core.npm_tools import PINNED, ToolMissing, cached_node_modules

ROOT = Path(__file__).resolve().parents[2]


def test_the_pins_are_the_checkouts() -> None:
    declared = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    assert {name: declared[name] for name in PINNED} == PINNED


def _fake_install(folder: Path, versions: dict[str, str]) -> None:
    for name, version in versions.items():
        (folder / "node_modules" / name).mkdir(parents=True, exist_ok=True)
        (folder / "node_modules" / name / "package.json").write_text(json.dumps({"version": version}))


def test_a_complete_cache_is_used_and_a_stale_one_is_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFMARKET_TOOLS_CACHE", str(tmp_path))
    _fake_install(tmp_path / "npm", PINNED)
    assert cached_node_modules(install=False) == tmp_path / "npm" / "node_modules"
    _fake_install(tmp_path / "npm", {"solc": "0.8.1"})  # another version: not this release's
    with pytest.raises(ToolMissing):
        cached_node_modules(install=False)


def test_without_node_the_answer_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFMARKET_TOOLS_CACHE", str(tmp_path))
    monkeypatch.setattr(npm_tools.shutil, "which", lambda _name: None)
    with pytest.raises(ToolMissing) as missing:
        cached_node_modules()
    assert missing.value.exit_code == 2 and missing.value.code == "tool_missing"
    assert "Node.js" in missing.value.message and "apt-get install nodejs npm" in missing.value.message
    assert not (tmp_path / "npm" / "node_modules").exists()
