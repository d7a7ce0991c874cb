"""A compile stopped from outside leaves no EVM-check chain and no temp folder (issue 41): ``proofmarket compile``
killed by SIGTERM (a timeout) or SIGKILL while its verifier check's anvil runs takes that anvil with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proofmarket.samples import sample_path

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append((int(entry.name), cmdline))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_compile_leaves_no_anvil_and_no_folder(sig: signal.Signals, tmp_path: Path) -> None:
    from anvil_binary import anvil_or_skip

    anvil_or_skip()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PROOFMARKET_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "compile", str(sample_path("mlp")),
                             "--sample", str(sample_path("mlp", "samples"))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        anvil = None
        while anvil is None:  # the check's anvil starts while the tuner searches
            assert proc.poll() is None, "the compile ended before its EVM check started"
            assert time.monotonic() < deadline, "no EVM-check anvil within 300 s"
            anvil = next((pid for pid, cmd in _children(proc.pid) if "anvil" in cmd), None)
            time.sleep(0.1)
        proc.send_signal(sig)
        proc.wait(30)
        gone = time.monotonic() + 10
        while _alive(anvil) and time.monotonic() < gone:
            time.sleep(0.1)
        assert not _alive(anvil), "the EVM check's anvil outlived the compile"
        assert not list(tmp.glob("proofmarket-evm-check-*")), "the compile left an EVM-check folder"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_a_later_compile_sweeps_the_folders_an_older_one_left(tmp_path: Path) -> None:
    from proofmarket.systems.ezkl.evm_check import sweep_stale

    left = tmp_path / "proofmarket-evm-check-abc123"
    left.mkdir()
    (left / "anvil-state.json").write_text("{}")
    other = tmp_path / "something-else"
    other.mkdir()
    assert sweep_stale(tmp_path) == [left]
    assert not left.exists() and other.exists()
