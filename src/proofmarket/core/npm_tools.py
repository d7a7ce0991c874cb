"""The JavaScript tools the owner's and operator's commands need (solcjs for the Solidity verifiers, anvil for the
local EVM), wherever proofmarket is installed: a checkout's node_modules (``make setup``), else a user cache that
the first command needing them fills from the npm registry, pinned to the versions this release was tested with and
checked after the install (one progress line on stderr). With no Node.js: ``ToolMissing``, one sentence saying what
to install (exit 2).

    PROOFMARKET_NODE_MODULES   a node_modules folder of your own (solc in it): used as is
    PROOFMARKET_TOOLS_CACHE    where the cache lives (default: $XDG_CACHE_HOME/proofmarket, else ~/.cache/proofmarket)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from proofmarket.core.errors import UsageError

#: the npm packages the commands run, at the versions package.json pins (tests/core/test_npm_tools.py keeps them
#: equal)
PINNED: dict[str, str] = {"solc": "0.8.28", "@foundry-rs/anvil": "1.7.1"}
INSTALL_TIMEOUT_S = 600


class ToolMissing(UsageError, code="tool_missing"):
    """A JavaScript tool a command needs is not here and cannot be installed (no Node.js or npm, no registry)."""


def cache_root() -> Path:
    configured = os.environ.get("PROOFMARKET_TOOLS_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "proofmarket"


def cached_node_modules(install: bool = True, say: Callable[[str], None] | None = None) -> Path:
    """The cache's node_modules with every ``PINNED`` package at its version: installed first when ``install`` (a
    file lock keeps two commands from installing at once); ``ToolMissing`` when it cannot be."""
    folder = cache_root() / "npm"
    modules = folder / "node_modules"
    if _complete(modules):
        return modules
    if not install:
        raise ToolMissing("the JavaScript tools (solc, anvil) are not installed here: run a command that needs them "
                          "with Node.js installed, or 'make setup' in a checkout")
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ToolMissing("Node.js 20 with npm is needed for the Solidity compiler and the local EVM (solc, anvil): "
                          "install it (Debian: apt-get install nodejs npm) or set PROOFMARKET_NODE_MODULES and "
                          "PROOFMARKET_ANVIL")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(modules):  # another command installed them while this one waited
            return modules
        (say or _stderr)(f"installing {', '.join(f'{k}@{v}' for k, v in PINNED.items())} from the npm registry into "
                         f"{folder} (once)")
        (folder / "package.json").write_text(json.dumps({"name": "proofmarket-tools-cache", "private": True,
                                                         "dependencies": PINNED}, indent=1))
        try:
            proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--save-exact"],
                                  cwd=folder, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ToolMissing(f"npm did not install the tools within {INSTALL_TIMEOUT_S} s (is the npm registry "
                              "reachable?)") from None
        if proc.returncode != 0 or not _complete(modules):
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ToolMissing(f"npm could not install the tools into {folder} ({last[:200]}): check the npm "
                              "registry can be reached, or set PROOFMARKET_NODE_MODULES")
    return modules


def _complete(modules: Path) -> bool:
    """Every pinned package is there at its pinned version."""
    for name, version in PINNED.items():
        manifest = modules / name / "package.json"
        try:
            if json.loads(manifest.read_text()).get("version") != version:
                return False
        except (OSError, ValueError):
            return False
    return True


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
