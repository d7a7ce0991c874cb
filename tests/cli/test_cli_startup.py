"""The command line starts without its heavy parts: printing --help (or --version) loads no chain, database, ML or
HTTP-server library; each loads when a command that needs it runs."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("web3", "eth_account", "sqlalchemy", "alembic", "onnxruntime", "onnx", "numpy", "x402", "fastapi", "torch")


def test_importing_the_command_line_loads_none_of_the_heavy_libraries() -> None:
    code = ("import sys, proofmarket.cli.main; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_version_is_printed() -> None:
    from typer.testing import CliRunner

    from proofmarket import __version__
    from proofmarket.cli.main import app

    ran = CliRunner().invoke(app, ["--version"])
    assert ran.exit_code == 0 and ran.stdout.strip() == __version__


def test_the_console_script_answers_version_before_the_command_line_loads() -> None:
    """``proofmarket --version`` (the console script's entry) loads neither Typer nor any command, nor pydantic's
    settings; ``--help`` loads the commands but not pydantic-settings (a command reads its settings when it runs)."""
    code = ("import sys; sys.argv = ['proofmarket', '--version']; from proofmarket.cli.entry import run; run(); "
            "print(','.join(m for m in ('typer', 'proofmarket.cli.main', 'pydantic_settings') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from proofmarket import __version__

    assert out == [__version__]  # the version, and nothing loaded
    code = "import sys, proofmarket.cli.main; print('pydantic_settings' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_a_command_of_the_main_module_runs_without_the_others_loaded(tmp_path: object) -> None:
    """``proofmarket models`` (like prove and compile) runs with only cli.main's own commands: the chain, money and
    node commands' modules are not imported; ``--help`` and any other command still see every command."""
    code = ("import sys; sys.argv = ['proofmarket', 'models', '--home', sys.argv[1]]; "
            "from proofmarket.cli.entry import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            "print('LOADED', ','.join(m for m in ('proofmarket.cli.chain_cmds', 'proofmarket.cli.money_cmds', "
            "'proofmarket.cli.node_cmd') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LOADED"
    helped = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['proofmarket', '--help']; "
                             "from proofmarket.cli.entry import run; run()"], capture_output=True, text=True)
    assert "node" in helped.stdout and "validator" in helped.stdout


def test_help_is_plain_and_loads_no_markdown_parser() -> None:
    """Rich help loads rich's markdown parser (markdown-it): a third of ``proofmarket --help``'s time. Every group's
    help is click's plain text (``cli/groups.py``), the commands' own output still rich."""
    code = ("import sys; sys.argv = ['proofmarket', '--help']; from proofmarket.cli.entry import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            "print('LOADED', ','.join(m for m in ('markdown_it', 'rich.markdown', 'typer.rich_utils') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED" and "Usage: proofmarket" in out and "╭" not in out
