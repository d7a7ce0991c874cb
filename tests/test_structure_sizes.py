"""The size rule ``make lint`` runs (``scripts/check_sizes.py``): holds for the tree, and catches what it forbids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from script_module import load_script

ROOT = Path(__file__).resolve().parents[1]
check_sizes = load_script(Path("scripts/check_sizes.py"), "check_sizes")
check_env = load_script(Path("scripts/check_env.py"), "check_env")
check_contracts = load_script(Path("scripts/check_contracts.py"), "check_contracts")


def test_the_tree_keeps_the_rule() -> None:
    assert check_sizes.breaches(ROOT) == []


def test_a_module_past_the_limit_or_its_ceiling_is_caught(tmp_path: Path) -> None:
    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    (src / "small.py").write_text("x = 1\n" * 10)
    (src / "big.py").write_text("x = 1\n" * 11)
    (src / "old.py").write_text("x = 1\n" * 13)
    (src / "fixed.py").write_text("x = 1\n" * 5)
    over = {"src/pkg/old.py": 12, "src/pkg/fixed.py": 20}
    found = check_sizes.breaches(tmp_path, limit=10, over=over)
    assert any(line.startswith("src/pkg/big.py: 11 lines, over the limit of 10") for line in found)
    assert any(line.startswith("src/pkg/old.py: 13 lines, over its ceiling of 12") for line in found)
    assert any(line.startswith("src/pkg/fixed.py: 5 lines, no longer over 10") for line in found)
    assert not any("small.py" in line for line in found)


def test_only_core_reads_the_environment() -> None:
    assert check_env.env_reads(ROOT) == []


def test_an_environment_read_outside_core_is_caught(tmp_path: Path) -> None:
    core, other = tmp_path / "src" / "proofmarket" / "core", tmp_path / "src" / "proofmarket" / "node"
    core.mkdir(parents=True)
    other.mkdir(parents=True)
    (core / "settings.py").write_text("import os\nHOME = os.environ.get('HOME')\n")
    (other / "ok.py").write_text("# os.environ is read in core only\nx = 1\n")
    (other / "bad.py").write_text("import os\nA = os.getenv('A')\nB = os.environ['B']\n")
    (other / "sly.py").write_text("from os import environ\n")
    found = check_env.env_reads(tmp_path)
    assert [line.split(": ")[0] for line in found] == ["src/proofmarket/node/bad.py:2", "src/proofmarket/node/bad.py:3",
                                                      "src/proofmarket/node/sly.py:1"]


@pytest.mark.parametrize(("planted", "line", "contract"), [
    ("payments/credits/rail.py", "from proofmarket.payments.batch import rail as other", "payment rails never import"),
    ("systems/attested/verify.py", "from proofmarket.systems.ezkl import bundle", "proof systems never import"),
    # a rail's own routes reach the node through the port's RailHost, never by importing the API
    ("payments/credits/routes.py", "from proofmarket.api import deps", "layers: entry points > api"),
])
def test_a_rail_or_system_importing_another_breaks_its_contract(tmp_path: Path, planted: str, line: str,
                                                                 contract: str) -> None:
    """``lint-imports`` on a copy of the tree with one rail (or proof system) importing another: its independence
    contract breaks."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "src", tmp_path / "src")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    module = tmp_path / "src" / "proofmarket" / planted
    module.write_text(module.read_text() + f"\n{line}  # noqa: E402\n")
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0, done.stdout
    assert contract in done.stdout and "BROKEN" in done.stdout


def test_every_rail_and_system_is_named_in_its_independence_contract() -> None:
    assert check_contracts.missing(ROOT) == []


@pytest.mark.parametrize(("family", "package"), [("payments", "streaming"), ("systems", "risc0")])
def test_a_new_rail_or_system_left_out_of_its_contract_is_caught(tmp_path: Path, family: str, package: str) -> None:
    """A rail (or proof system) package added without its name in the independence contract could import another
    unseen by ``lint-imports``: the coverage rule names it."""
    import shutil

    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path in (ROOT / "src" / "proofmarket" / family).glob("*/__init__.py"):
        (tmp_path / path.relative_to(ROOT)).parent.mkdir(parents=True)
        (tmp_path / path.relative_to(ROOT)).write_text("")
    planted = tmp_path / "src" / "proofmarket" / family / package
    planted.mkdir()
    (planted / "__init__.py").write_text("from proofmarket.payments.exact import rail  # noqa: F401\n")
    found = check_contracts.missing(tmp_path)
    assert len(found) == 1 and f"proofmarket.{family}.{package}" in found[0] and "missing from the contract" in found[0]


OLD_NAMES = re.compile(r"\b(JobRunner|JobService|JobQueue|LocalJobQueue|CeleryJobQueue|JobMetrics|JobRepo|JobRow|"
                       r"JobStatus|JobKind|NewJob|PaymentPort|PaymentRail|PaymentTicket)\b")


def test_one_vocabulary_call_rail_ticket_settlement() -> None:
    """The code says Call, Rail, ProofSystem, Settlement and Ticket: the old names are gone (not aliased), and one
    class is called Settlement."""
    src = ROOT / "src" / "proofmarket"
    old = [f"{p.relative_to(ROOT)}:{n}" for p in src.rglob("*.py")
           for n, line in enumerate(p.read_text().splitlines(), 1) if OLD_NAMES.search(line)]
    assert old == []
    settlements = [p for p in src.rglob("*.py") if re.search(r"^class Settlement\b", p.read_text(), re.M)]
    assert [p.relative_to(src).as_posix() for p in settlements] == ["payments/tickets.py"]
    from proofmarket.calls import CallRunner, CallService
    from proofmarket.payments.port import Rail, Rails
    from proofmarket.payments.tickets import Settlement, Ticket
    from proofmarket.systems.port import ProofSystem

    assert all((CallRunner, CallService, Rail, Rails, Settlement, Ticket, ProofSystem))
