"""The times report (scripts/test_times.py) sums the EZKL calls the test processes recorded and names the key setups
of one circuit done more than once."""

from __future__ import annotations

from pathlib import Path

from script_module import load_script

test_times = load_script(Path("scripts/test_times.py"), "times_report_script")


def _call(op: str, s: float, digest: str, test: str) -> dict[str, object]:
    return {"worker": "gw0", "kind": "ezkl", "op": op, "s": s, "digest": digest, "test": test}


def test_ezkl_calls_are_summed_by_operation_and_repeated_setups_named() -> None:
    records = [_call("setup", 2.0, "aaa", "tests/a/test_x.py::t1"), _call("setup", 3.0, "aaa", "tests/b/test_y.py::t2"),
               _call("setup", 9.0, "bbb", "tests/a/test_x.py::t3"), _call("prove", 0.5, "w1", "tests/a/test_x.py::t1"),
               _call("setup", 1.0, "", "tests/c/test_z.py::t4")]  # a setup of no readable file: counted, not matched
    lines = test_times._ezkl(records)
    assert "| setup | 4 | 15.0 |" in lines and "| prove | 1 | 0.5 |" in lines
    assert lines.index("| setup | 4 | 15.0 |") < lines.index("| prove | 1 | 0.5 |")  # the most seconds first
    repeated = [line for line in lines if line.startswith("| 5.0 |")]
    assert repeated == ["| 5.0 | 2 | aaa | tests/a/test_x.py, tests/b/test_y.py |"]
    assert not any("bbb" in line for line in lines)  # set up once: not repeated


def test_no_ezkl_records_add_no_section() -> None:
    assert test_times._ezkl([{"worker": "gw0", "kind": "test", "test": "t", "world": "w"}]) == []
