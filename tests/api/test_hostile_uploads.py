"""Hostile uploads against a live node (issue 35): every file of the corpus (``tests/support/hostile.py``) gets its
own stable 4xx code, the node process's memory does not grow by 50 MB for any of them, and it keeps answering.
The node runs as ``proofmarket node`` in a process of its own, so its resident memory is its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proofmarket.chain.devnet import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import hostile  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "hostile-admin-token"
SAMPLES_CAP = 1 << 20
MiB = 1024 * 1024


def _rss(pid: int) -> int:
    """Resident memory of the process ``pid`` alone (its children are the sandbox's, not the node's)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> object:
    home = tmp_path_factory.mktemp("hostile-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    env |= {"PROOFMARKET_HOME": str(home), "PROOFMARKET_DATABASE_URL": f"sqlite:///{home / 'node.db'}",
            "PROOFMARKET_ADMIN_TOKEN": TOKEN, "PROOFMARKET_MAX_SAMPLES_BYTES": str(SAMPLES_CAP),
            "PROOFMARKET_PROVER_WORKERS": "1", "PROOFMARKET_UPLOAD_CHECK_MEMORY_MB": "768"}
    proc = subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "node", "--port", str(port),
                             "--log-level", "warning"], env=env, cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            httpx.get(f"{url}/health", timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.2)
    yield proc, url
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


def _upload(url: str, item: hostile.Hostile) -> httpx.Response:
    files = {"onnx": ("model.onnx", item.onnx, "application/octet-stream"),
             "samples": (item.samples_name, item.samples, "application/octet-stream")}
    return httpx.post(f"{url}/v1/models", files=files, data={"price_atomic": "1000"},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300)


def test_every_hostile_file_gets_its_code_and_costs_the_node_no_memory(node: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = node
    corpus = hostile.corpus(SAMPLES_CAP)
    _upload(url, corpus[-1])  # the first upload loads the multipart path: measured from after it
    before = _rss(proc.pid)
    answers: dict[str, tuple[int, str, int]] = {}
    for item in corpus:
        response = _upload(url, item)
        grown = _rss(proc.pid) - before
        code = response.json().get("error", {}).get("code", "") if response.headers.get(
            "content-type", "").startswith("application/json") else ""
        answers[item.name] = (response.status_code, code, grown // MiB)
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200, f"the node stopped answering after {item.name}"
    wrong = {name: got for name, got in answers.items()
             if not (400 <= got[0] < 500 and got[1] in next(h.codes for h in corpus if h.name == name))}
    assert not wrong, f"answers outside the expected codes: {wrong} (all: {answers})"
    heavy = {name: got for name, got in answers.items() if got[2] >= 50}
    assert not heavy, f"the node's memory grew by 50 MB or more: {heavy}"
