"""One request cannot kill the node (issue 20, P3-03): ``py_ecc`` (imported through ``eth_account``) raises the
recursion limit to 100000, so a body of nested arrays used to overflow the C stack in ``json.loads``. The limit
is put back at ``import proofmarket``, and every JSON body is depth-checked (``proofmarket.core.jsonlimits``) before
the app parses it: 400 ``json_too_deep``, and the node answers the next request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import AppFactory

from proofmarket.chain.devnet import free_port
from proofmarket.core import jsonlimits
from proofmarket.core.errors import JsonTooDeep, JsonTooLarge

RUN_NODE = ("import typer; from proofmarket.cli.node_cmd import register; "
            "app = typer.Typer(); register(app); app.command('noop')(lambda: None); app()")
NESTED_MIB = b"[" * (512 * 1024) + b"]" * (512 * 1024)  # 1 MiB: the node's default body limit


def test_depth_is_counted_without_recursion_and_strings_do_not_count() -> None:
    assert jsonlimits.depth_of(b'{"a": [1, {"b": []}], "c": "[[[[{{{{"}') == 4
    assert jsonlimits.depth_of(r'["\"[[[[", "\\", [[]]]') == 3  # escaped quotes and backslashes in strings
    assert jsonlimits.depth_of(b"[" * 1_000_000) == 1_000_000
    assert jsonlimits.loads(b'{"a": [[1]]}', max_depth=3) == {"a": [[1]]}
    with pytest.raises(JsonTooDeep) as deep:
        jsonlimits.loads(b"[" * 65 + b"]" * 65)
    assert deep.value.code == "json_too_deep" and deep.value.http_status == 400
    with pytest.raises(JsonTooLarge) as large:
        jsonlimits.check(b"[1, 2, 3]", max_bytes=4)
    assert large.value.code == "json_too_large"


@pytest.mark.parametrize("imports", ["import proofmarket, eth_account", "import eth_account, proofmarket",
                                     "import proofmarket.validator.process", "import proofmarket.api.app",
                                     "import proofmarket.node.worker, eth_account"])
def test_the_recursion_limit_is_sane_after_importing_proofmarket_and_eth_account(imports: str) -> None:
    code = (f"{imports}\nimport json, sys\nassert 'py_ecc' in sys.modules\nprint(sys.getrecursionlimit())\n"
            "try:\n    json.loads('[' * 300000)\nexcept RecursionError:\n    print('RecursionError')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])  # -11: the nested document killed it
    limit, outcome = run.stdout.split()
    assert int(limit) <= 1000 and outcome == "RecursionError"


@pytest.mark.slow
def test_a_nested_body_of_one_mib_gets_400_and_the_node_answers_the_next_request(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    env |= {"PROOFMARKET_HOME": str(tmp_path / "home"), "PROOFMARKET_PROVER_WORKERS": "1",
            "PROOFMARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'node.db'}"}
    proc = subprocess.Popen([sys.executable, "-c", RUN_NODE, "node", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{base}/health", proc)
        for path, headers in (("/v1/verify", {"Content-Type": "application/json"}),
                              ("/v1/verify", {}),  # no content type: FastAPI parses JSON all the same
                              ("/v1/court/1/input", {"Content-Type": "application/json"})):
            answer = httpx.post(f"{base}{path}", content=NESTED_MIB, headers=headers, timeout=60)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"] == "json_too_deep"
            assert httpx.get(f"{base}/health", timeout=10).status_code in (200, 503)  # still serving
        chunked = httpx.post(f"{base}/v1/verify", content=iter([NESTED_MIB[:1000], NESTED_MIB[1000:]]),
                             headers={"Content-Type": "application/json"}, timeout=60)  # no Content-Length
        assert chunked.status_code == 400 and chunked.json()["error"]["code"] == "json_too_deep"
        too_large = httpx.post(f"{base}/v1/verify", content=iter([b"[" * 800_000, b"]" * 800_000]),
                               headers={"Content-Type": "application/json"}, timeout=60)
        assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "body_too_large"
        ordinary = httpx.post(f"{base}/v1/verify", json={"format": "nothing"}, timeout=30)
        assert ordinary.status_code == 200, ordinary.text  # an ordinary body is parsed: a verdict comes back
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def _wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within 60 s")


def test_an_upload_with_nested_samples_gets_json_too_deep(make_app: AppFactory) -> None:
    """A multipart body is not checked on the way in: its JSON parts are, where they are parsed."""
    from api_helpers import ADMIN_TOKEN
    from fastapi.testclient import TestClient

    from proofmarket.samples import sample_path

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    onnx = ("mlp.onnx", sample_path("mlp").read_bytes(), "application/octet-stream")
    data = {"price_atomic": "25000", "name": "iris-mlp"}
    nested = "[" * 200_000 + "]" * 200_000
    with TestClient(make_app(admin_token=ADMIN_TOKEN)) as client:
        as_text = client.post("/v1/models", files={"onnx": onnx}, data={**data, "samples": nested}, headers=headers)
        assert as_text.status_code == 400 and as_text.json()["error"]["code"] == "json_too_deep", as_text.text
        as_file = client.post("/v1/models", files={"onnx": onnx, "samples": ("s.json", nested, "application/json")},
                              data=data, headers=headers)
        assert as_file.status_code == 400 and as_file.json()["error"]["code"] == "json_too_deep", as_file.text
        assert client.get("/health").status_code in (200, 503)
