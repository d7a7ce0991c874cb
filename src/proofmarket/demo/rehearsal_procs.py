"""How the rehearsal runs the real commands: ``proofmarket ...`` in a subprocess with the rehearsal's environment
(its home, the chain profile, the anvil's RPC, keystores), one-shot (``Cli.run``, ``--json`` parsed) or in the
background (``Cli.serve``: a facilitator, a node, stopped by the rehearsal by its own pid).

``Cli.offers(command, option)`` tells whether a command (or option) exists in this checkout: the rehearsal runs
what has landed and names what has not."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from proofmarket.core.settings import child_environment

PINNED_CLI = Path(__file__).resolve().parents[3] / "scripts" / "rehearsal" / "pinned_cli.py"


class RehearsalError(Exception):
    pass


def proofmarket_binary() -> list[str]:
    """The ``proofmarket`` console script of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / "proofmarket"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("proofmarket")
    if found is None:
        raise RehearsalError("the proofmarket command is not installed: run 'make setup'")
    return [found]


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path
    logs: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    helps: dict[tuple[str, ...], str | None] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=proofmarket_binary)  # how 'proofmarket' is started

    @classmethod
    def create(cls, cwd: Path, env: Mapping[str, str]) -> Cli:
        base = child_environment(env)
        base.setdefault("COLUMNS", "200")
        logs = cwd / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return cls(base, cwd, logs)

    def with_env(self, **extra: str) -> Cli:
        return Cli({**self.env, **extra}, self.cwd, self.logs, self.procs, self.helps, self.prefix)

    def with_srs_pin(self, logrows: int, sha256: str) -> Cli:
        """The same commands through ``scripts/rehearsal/pinned_cli.py``: the rehearsal's SRS pinned for
        ``logrows`` in those processes only."""
        if not PINNED_CLI.is_file():
            raise RehearsalError(f"{PINNED_CLI} is missing: the rehearsal runs from a source checkout")
        prefix = [sys.executable, str(PINNED_CLI), "--pin", f"{logrows}:{sha256}", "--"]
        return Cli(self.env, self.cwd, self.logs, self.procs, dict(self.helps), prefix)

    def run(self, *args: str, timeout: float = 300.0, expect: int = 0) -> Any:
        """``proofmarket ARGS --json``: the JSON document it printed (exit code ``expect``)."""
        argv = [*self.prefix, *args, "--json"]
        try:
            done = subprocess.run(argv, env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RehearsalError(f"'proofmarket {' '.join(args)}' did not finish within {timeout:.0f} s") from exc
        if done.returncode != expect:
            raise RehearsalError(f"'proofmarket {' '.join(args)}' exited {done.returncode}: "
                                 f"{(done.stdout + done.stderr).strip()[-1500:]}")
        try:
            return json.loads(done.stdout)
        except ValueError as exc:
            raise RehearsalError(f"'proofmarket {' '.join(args)}' printed no JSON: {done.stdout[-500:]}") from exc

    def serve(self, name: str, *args: str, ready_url: str, timeout: float = 120.0) -> subprocess.Popen[bytes]:
        """Start ``proofmarket ARGS`` in the background (its own session, output in logs/NAME.log) and wait until
        ``ready_url`` answers 200."""
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([*self.prefix, *args], env=self.env, cwd=self.cwd, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RehearsalError(f"'proofmarket {' '.join(args)}' exited {proc.returncode} at start: "
                                     f"{self.tail(name)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return proc
            time.sleep(0.25)
        raise RehearsalError(f"{name} did not answer {ready_url} within {timeout:.0f} s: {self.tail(name)}")

    def tail(self, name: str, lines: int = 12) -> str:
        try:
            return " | ".join((self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop_all(self, timeout: float = 20.0) -> None:
        """SIGTERM the background commands this rehearsal started (by their pid's session), SIGKILL laggards."""
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        self.procs.clear()

    def offers(self, *command: str, option: str | None = None) -> bool:
        """Whether ``proofmarket COMMAND`` exists here (and takes ``option``)."""
        if command not in self.helps:
            done = subprocess.run([*self.prefix, *command, "--help"], env=self.env, cwd=self.cwd,
                                  capture_output=True, text=True, timeout=120)
            self.helps[command] = done.stdout if done.returncode == 0 else None
        text = self.helps[command]
        return text is not None and (option is None or option in text)
