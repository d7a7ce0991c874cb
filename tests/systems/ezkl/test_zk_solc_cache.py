"""solcjs's output is cached by source: the same verifier source (EZKL's reusable verifier is one source for every
circuit) is compiled once per machine, another source is compiled, and an unreadable cache entry is compiled again."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmarket.systems.ezkl import solidity

SOURCE = "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\ncontract Halo2Verifier {{ function f() external " \
         "pure returns (uint256) {{ return {value}; }} }}\n"


def test_the_same_source_is_compiled_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFMARKET_TOOLS_CACHE", str(tmp_path / "cache"))
    sol = tmp_path / "Verifier.sol"
    sol.write_text(SOURCE.format(value=1))
    first = solidity.compile_verifier(sol)
    assert first.bytecode.startswith("0x") and first.deployed_size > 0
    entries = list((tmp_path / "cache" / "solc").glob("*.json"))
    assert len(entries) == 1

    runs: list[str] = []
    real = solidity._solcjs
    monkeypatch.setattr(solidity, "_solcjs", lambda *a: runs.append(a[1]) or real(*a))
    assert solidity.compile_verifier(sol) == first and runs == []  # read from the cache

    sol.write_text(SOURCE.format(value=2))
    other = solidity.compile_verifier(sol)
    assert other.bytecode != first.bytecode and len(runs) == 1  # another source: compiled

    entries[0].write_text("{not json")
    sol.write_text(SOURCE.format(value=1))
    assert solidity.compile_verifier(sol) == first and len(runs) == 2  # unreadable entry: compiled again
    assert solidity.compile_verifier(sol) == first and len(runs) == 2  # and written over
