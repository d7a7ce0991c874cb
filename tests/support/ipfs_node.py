"""A real IPFS node for the tests: Helia from npm, run by scripts/ipfs_node.mjs (Kubo's RPC subset and a trustless
gateway), on a throwaway repository."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from proofmarket.chain.devnet import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def ipfs_node(repo: Path) -> Iterator[str]:
    """Start the node on ``repo``; yields its URL (RPC API and gateway), stops it on exit."""
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "@helia" / "utils").is_dir():
        pytest.fail("the IPFS tests need node and the npm tools (make setup)")
    port = free_port()
    proc = subprocess.Popen([node, str(ROOT / "scripts" / "ipfs_node.mjs"), str(repo), "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert "listening" in line, line + (proc.stdout.read() if proc.poll() is not None else "")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
