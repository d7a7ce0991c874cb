"""/app: the web app's files (labels on every control, a page that works at 375 px, a CSP that keeps it on this
origin, nothing but the listed files), and its in-page verifier run in Node against a live node: a real bundle
verifies, a flipped proof byte does not, a file that is not a bundle says so."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from api_helpers import AppFactory, mlp_input
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_labels_every_control_and_stays_on_its_origin(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        assert client.get("/app", follow_redirects=False).headers["location"] == "/app/"
        page = client.get("/app/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "http" not in csp
        html = page.text
        assert 'name="viewport" content="width=device-width' in html  # 375 px wide phones
        controls = re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', html)
        labels = set(re.findall(r'<label for="([^"]+)"', html))
        assert controls and set(controls) <= labels, set(controls) - labels
        assert not re.search(r'(src|href)="https?://', html)  # no CDN
        for name in ("app.js", "verify.js", "style.css"):
            assert client.get(f"/app/{name}").status_code == 200
        for bad in ("../pyproject.toml", "..%2F..%2Fpyproject.toml", "index.html.bak", "vendor%2F..%2F..%2Fapp.py"):
            assert client.get(f"/app/{bad}").status_code == 404, bad
        assert "/app/" in client.get("/dashboard").text  # the dashboard links here


@pytest.fixture
def served(mlp_app: object) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(mlp_app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def _verify_in_node(url: str, path: Path, *flags: str) -> dict[str, object]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, str(ROOT / "scripts" / "verify_bundle.mjs"), url, str(path), *flags],
                          capture_output=True, text=True, timeout=120)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == (0 if result["valid"] else 1)
    return result


@pytest.mark.slow
def test_the_in_page_verifier_accepts_a_real_bundle_and_rejects_a_flipped_byte(served: str, mlp_id: str,
                                                                               tmp_path: Path) -> None:
    import httpx

    if not (ROOT / "node_modules" / "@ezkljs" / "engine").is_dir():
        pytest.fail("the WASM verifier is not installed: run 'make setup'")
    assert httpx.get(f"{served}/app/vendor/ezkl_bg.wasm").headers["content-type"] == "application/wasm"
    body = httpx.post(f"{served}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120).json()
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(body["bundle"]))
    good = _verify_in_node(served, bundle)
    assert good["valid"] is True and "match the CIDs" in " ".join(good["checks"])  # type: ignore[arg-type]
    bad = _verify_in_node(served, bundle, "--tamper")
    assert bad["valid"] is False and bad["error"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    assert "not a proofmarket proof bundle" in str(_verify_in_node(served, other)["error"])
