"""The local devnet: an anvil process on a free port, its state persisted in the data folder.

``Devnet(data_dir)`` starts anvil with ``--state data_dir/anvil-state.json`` (loaded if present,
dumped on a clean stop and every ``state_interval`` seconds), waits until the RPC answers, and stops
it with SIGTERM (then SIGKILL). Use it as a context manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from proofmarket.chain.client import ChainClient
from proofmarket.chain.devkeys import require_devnet
from proofmarket.core import lifeline
from proofmarket.core.errors import RPCUnavailable
from proofmarket.core.npm_tools import cached_node_modules
from proofmarket.core.profiles import DEVNET
from proofmarket.core.settings import ToolPaths

_REPO_ROOT = Path(__file__).resolve().parents[3]


def find_anvil(install: bool = True) -> Path:
    """``PROOFMARKET_ANVIL``, else the anvil binary from node_modules (cwd or repo), else PATH, else the user cache
    of the pinned tools (installed on first use when ``install``: ``core.npm_tools``)."""
    configured = ToolPaths().anvil
    if configured is not None:
        if not configured.is_file():
            raise RPCUnavailable(f"PROOFMARKET_ANVIL={configured} is not a file")
        return configured
    on_path = shutil.which("anvil")
    roots = [Path.cwd(), _REPO_ROOT]
    for root in roots:
        modules = root / "node_modules" / "@foundry-rs"
        native = sorted(modules.glob("anvil-*/bin/anvil"))  # the platform package, no node wrapper
        wrapper = root / "node_modules" / ".bin" / "anvil"
        for candidate in (*native, wrapper):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    if on_path:
        return Path(on_path)
    cache = cached_node_modules(install=install)
    native = sorted((cache / "@foundry-rs").glob("anvil-*/bin/anvil"))
    for candidate in (*native, cache / ".bin" / "anvil"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RPCUnavailable("anvil is not in the tools cache after its install: set PROOFMARKET_ANVIL to an anvil binary")


class PortTaken(RPCUnavailable):
    """Another process bound the port picked for anvil before anvil did."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Devnet:
    def __init__(
        self,
        data_dir: Path | None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        anvil: Path | None = None,
        state_interval: int = 5,
        startup_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
        chain_id: int = DEVNET.chain_id,
    ) -> None:
        """``chain_id``: what anvil answers to eth_chainId (another id: a local stand-in for that chain, where
        dev keys and devnet RPC methods are refused like on the real one). ``data_dir`` None: a throwaway chain
        that leaves nothing behind: no state file, its log in an anonymous file, and anvil dies with this process
        (SIGTERM, a timeout, ``kill -9``: ``core/lifeline.popen``)."""
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._log: Any = None
        self.host = host
        self.port = port or free_port(host)
        self._own_port = port is None  # picked here: another port is picked if someone took it meanwhile
        self._log_start = 0  # where this start's lines begin in the log (a devnet's log file is appended to)
        self.anvil = anvil
        self.state_interval = state_interval
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.chain_id = chain_id
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state_file(self) -> Path:
        assert self.data_dir is not None, "a throwaway devnet keeps no state"
        return self.data_dir / "anvil-state.json"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None, "a throwaway devnet keeps its log in an anonymous file"
        return self.data_dir / "anvil.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> ChainClient:
        return ChainClient(self.rpc_url)

    def start(self) -> Devnet:
        """Start anvil and wait until it answers on its port, as itself: a free port picked here can be taken by
        another process's anvil before ours binds it (two suites on one machine), and that one would answer the
        same chain id; such a start is retried on another port."""
        if self.running:
            return self
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                if not self._own_port or attempt == 2:
                    raise
                self.port = free_port(self.host)
        return self

    def _start(self) -> Devnet:
        binary = self.anvil or find_anvil()
        args = [str(binary), "--host", self.host, "--port", str(self.port), "--chain-id", str(self.chain_id)]
        if self.data_dir is None:  # throwaway: nothing on disk, tied to this process
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for anvil; closed by stop)
            try:
                self._proc = lifeline.popen([*args, *self.extra_args], stdout=self._log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
            except OSError as exc:
                raise RPCUnavailable(f"cannot start anvil ({binary}): {exc}", anvil=str(binary)) from exc
            self._wait_ready()
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--state", str(self.state_file), "--state-interval", str(self.state_interval), *self.extra_args]
        self._log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            try:
                self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise RPCUnavailable(f"cannot start anvil ({binary}): {exc}", anvil=str(binary)) from exc
        self._wait_ready()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (anvil dumps its state), SIGKILL if it has not exited after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def detach(self) -> int:
        """Leave anvil running after this object is gone (``proofmarket chain up``); return its pid.
        Stop it later with ``stop_detached(pid)``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            raise RPCUnavailable("the devnet is not running: nothing to detach")
        proc.returncode = 0  # no longer ours to wait for: keeps Popen from warning that it still runs
        return proc.pid

    def __enter__(self) -> Devnet:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # our own session: the node wrapper and its anvil child, if any

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                tail = self._log_tail()
                if "in use" in tail.lower():
                    raise PortTaken(f"port {self.port} was taken before anvil bound it: {tail}", port=self.port)
                raise RPCUnavailable(f"anvil exited with code {code} at start: {tail}", log=self._log_name())
            if self._answers() and self._listening():  # answered by ours, not another anvil on the same port
                return
            time.sleep(0.1)
        self.stop()
        raise RPCUnavailable(
            f"anvil did not answer on {self.rpc_url} within {self.startup_timeout:.0f} s: {self._log_tail()}",
            log=self._log_name(),
        )

    def _answers(self) -> bool:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        request = urllib.request.Request(self.rpc_url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return "result" in json.loads(response.read())
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _log_name(self) -> str:
        return str(self.log_file) if self.data_dir is not None else "(an anonymous file)"

    def _listening(self) -> bool:
        """Our anvil says it listens on our port (its log since this start)."""
        try:
            if self._log is not None:
                self._log.seek(0)
                text = self._log.read().decode(errors="replace")
            else:
                with self.log_file.open("rb") as f:
                    f.seek(self._log_start)
                    text = f.read().decode(errors="replace")
        except OSError:
            return False
        return f"Listening on {self.host}:{self.port}" in text

    def _log_tail(self, lines: int = 5) -> str:
        try:
            if self._log is not None:
                self._log.seek(0)
                text = self._log.read().decode(errors="replace")
            else:
                text = self.log_file.read_text(errors="replace")
            return " | ".join(text.strip().splitlines()[-lines:])
        except (OSError, AssertionError):
            return "(no log)"


def stop_detached(pid: int, timeout: float = 10.0) -> bool:
    """Stop a detached devnet by pid: SIGTERM its process group (anvil dumps its state), SIGKILL after
    ``timeout`` seconds. Return False when no such process was running."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return sig is signal.SIGKILL
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child (tests): reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaps (PID 1 in some containers) is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def advance_time(client: ChainClient, seconds: int) -> int:
    """Devnet only: move chain time forward and mine a block; return the new block timestamp."""
    require_devnet(client.chain_id, "evm_increaseTime")
    client.rpc("evm_increaseTime", [seconds])
    client.rpc("evm_mine", [])
    return client.timestamp()


@contextlib.contextmanager
def automine_off(client: ChainClient) -> Iterator[None]:
    """Devnet only: inside the block, sent transactions stay pending until a block is mined."""
    require_devnet(client.chain_id, "evm_setAutomine")
    client.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        client.rpc("evm_setAutomine", [True])


def mine(client: ChainClient, blocks: int = 1) -> None:
    """Devnet only: mine ``blocks`` empty blocks."""
    require_devnet(client.chain_id, "anvil_mine")
    client.rpc("anvil_mine", [hex(blocks)])
