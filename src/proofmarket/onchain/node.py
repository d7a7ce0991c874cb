"""The background devnet of ``proofmarket chain up|down``: anvil detached from the CLI process, its
state persisted in HOME/devnet (loaded on the next ``up``), its RPC URL and pid in HOME/devnet.json."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from proofmarket.chain.devnet import Devnet, stop_detached
from proofmarket.chain.home import DevnetInfo, MarketHome
from proofmarket.core.profiles import DEVNET


@dataclass(frozen=True)
class DevnetStatus:
    info: DevnetInfo | None
    running: bool  # the recorded node answers on its RPC URL
    changed: bool = False  # this call started or stopped it


def devnet_status(home: MarketHome) -> DevnetStatus:
    info = home.devnet()
    return DevnetStatus(info, info is not None and rpc_answers(info.rpc_url))


def devnet_up(home: MarketHome, *, port: int | None = None) -> DevnetStatus:
    """Start anvil in the background unless the recorded one still answers (then do nothing)."""
    status = devnet_status(home)
    if status.running:
        return status
    if status.info is not None:  # recorded but dead or hung: make sure it is gone before reusing its state
        _stop(status.info)
    net = Devnet(home.devnet_dir, port=port).start()
    info = DevnetInfo(net.rpc_url, net.detach(), DEVNET.chain_id, str(home.devnet_dir),
                      datetime.now(UTC).isoformat(timespec="seconds"))
    home.save_devnet(info)
    return DevnetStatus(info, True, changed=True)


def devnet_down(home: MarketHome) -> DevnetStatus:
    """Stop the recorded devnet (anvil writes its state on SIGTERM) and forget it."""
    info = home.devnet()
    if info is None:
        return DevnetStatus(None, False)
    stopped = _stop(info)
    home.forget_devnet()
    return DevnetStatus(info, False, changed=stopped)


def _stop(info: DevnetInfo) -> bool:
    return _is_anvil(info.pid) and stop_detached(info.pid)


def _is_anvil(pid: int) -> bool:
    """Guard against a recycled pid: on Linux the process must be an anvil."""
    try:
        return b"anvil" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust the record
    except OSError:
        return False


def rpc_answers(url: str, timeout: float = 1.0) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
