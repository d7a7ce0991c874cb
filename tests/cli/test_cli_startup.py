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
