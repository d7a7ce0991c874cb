"""The command line as a user runs it, in its own process: ``python -m proofmarket.cli.main ARGS`` on HOME, with none
of this process's PROOFMARKET_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(home: Path, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    env["PROOFMARKET_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "proofmarket.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=timeout_s, check=False)
