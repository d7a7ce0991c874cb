"""The suite's lanes come from what a test uses (tests/conftest.py), and stay true: a test that does what its lanes
do not say fails with the lane it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmarket.chain.devnet import Devnet


def _guard(request: pytest.FixtureRequest) -> object:
    return request.config.pluginmanager.get_plugin("proofmarket-lanes")


@pytest.mark.parametrize(("used", "said"), [({"chain"}, "started an anvil devnet"),
                                            ({"slow"}, "ran an EZKL compile or proof")])
def test_a_unit_test_that_starts_a_devnet_or_compiles_fails_naming_the_lane(
        request: pytest.FixtureRequest, used: set[str], said: str) -> None:
    guard = _guard(request)
    guard.used = set(used)  # type: ignore[attr-defined]
    with pytest.raises(pytest.fail.Exception, match=f"{said} but is not in the {next(iter(used))} lane"):
        guard._check(request.node)  # type: ignore[attr-defined]


def test_starting_a_devnet_and_calling_ezkl_are_noted(request: pytest.FixtureRequest,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import ezkl

    guard = _guard(request)
    guard.used = set()  # type: ignore[attr-defined]
    with pytest.raises(Exception):  # noqa: B017 (any failure: only the note before it matters)
        Devnet.start(object())  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017
        ezkl.compile_circuit("/nonexistent/model.onnx", "/nonexistent/compiled", "/nonexistent/settings.json")
    assert guard.used == {"chain", "slow"}  # type: ignore[attr-defined]
    guard.used = set()  # type: ignore[attr-defined]


def test_lanes_follow_the_fixtures_a_test_needs_through_other_fixtures(request: pytest.FixtureRequest) -> None:
    by_id = {item.nodeid: item for item in request.session.items}
    marks = {nodeid: {m.name for m in item.iter_markers()} for nodeid, item in by_id.items()}
    # manual_mining -> session_chain -> devnet: the chain lane, though nothing is written on the test or its file
    through = "tests/chain/test_chain_txs.py::test_two_clients_of_one_key_share_its_nonces"
    if through in marks:  # collected in this run
        assert "chain" in marks[through] and "slow" not in marks[through]
    assert {"chain", "slow"} & marks[request.node.nodeid] == set()


def _unit_lane_files(request: pytest.FixtureRequest, root: Path, unit: str) -> list[str]:
    """The files of the unit lane's tests: read off this run's own collection when it collected the whole suite
    (every lane marker is on its items by now), else from ``pytest --collect-only -m <unit>`` in a child."""
    import subprocess
    import sys

    from _pytest.mark.expression import Expression

    config = request.config
    whole = (not config.option.keyword and not config.option.markexpr and not config.option.deselect
             and {(Path(config.invocation_params.dir) / a).resolve() for a in config.args} <= {root, root / "tests"})
    if whole:
        expression = Expression.compile(unit)
        lanes = {item.nodeid: {m.name for m in item.iter_markers()} for item in request.session.items}
        return [nodeid.split("::")[0] for nodeid, marks in lanes.items() if expression.evaluate(marks.__contains__)]
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             "-p", "no:xdist", "-m", unit], cwd=root, capture_output=True, text=True, timeout=300)
    return [line.split("::")[0] for line in listed.stdout.splitlines() if "::" in line]


def test_every_package_has_tests_in_the_unit_lane(request: pytest.FixtureRequest) -> None:
    """``make test-fast`` (the unit lane) covers every package of ``src/proofmarket``: each has a test folder
    with tests that need no compile, devnet, npm tool, browser or release build."""
    root = Path(__file__).resolve().parents[1]
    unit = "not slow and not chain and not npm and not browser and not release"
    files = _unit_lane_files(request, root, unit)
    folders = {f.split("/")[1] for f in files}
    folders |= {"/".join(f.split("/")[1:3]) for f in files if f.startswith("tests/systems/")}
    packages = {p.name for p in (root / "src" / "proofmarket").iterdir() if (p / "__init__.py").is_file()}
    packages |= {f"systems/{p.name}" for p in (root / "src" / "proofmarket" / "systems").iterdir()
                 if (p / "__init__.py").is_file()}
    assert packages - {"samples"} <= folders, sorted(packages - folders)  # samples: data, tested through models
