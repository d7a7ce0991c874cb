"""/app: the web app's files (labels on every control, a page that works at 375 px, a CSP that keeps it on this
origin, nothing but the listed files), and its in-page verifier run in Node against a live node: a real bundle
verifies, a flipped proof byte does not, a file that is not a bundle says so."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import AppFactory, mlp_input
from browser_wallet import chromium_or_skip, serious_violations, with_axe
from fastapi import FastAPI
from fastapi.testclient import TestClient
from served import Served

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
        for name in ("app.js", "verify.js", "style.css", "wallet.js", "onchain.js", "commit.js", "call.js",
                     "escrow.js", "account.js", "access.js", "ui.js"):
            assert client.get(f"/app/{name}").status_code == 200, name
            assert client.get(f"/app/{name}").headers["content-type"].startswith("text/javascript" if
                                                                              name.endswith(".js") else "text/css")
        market = client.get("/app/abi/InferenceMarket.json")  # the page's ABIs are the node's compiled artifacts
        assert market.status_code == 200 and "requestInference" in {e.get("name") for e in market.json()}
        assert "default-src 'self'" in market.headers["content-security-policy"]
        for bad in ("Halo2Verifier", "..%2Fdeploy", "InferenceMarket.json%00"):
            assert client.get(f"/app/abi/{bad}.json").status_code == 404, bad
        for bad in ("../pyproject.toml", "..%2F..%2Fpyproject.toml", "index.html.bak", "vendor%2F..%2F..%2Fapp.py"):
            assert client.get(f"/app/{bad}").status_code == 404, bad
        assert "/app/" in client.get("/dashboard").text  # the dashboard links here


@pytest.fixture
def served(mlp_app: FastAPI) -> Iterator[str]:
    with Served(mlp_app) as node:
        yield node.url


def _verify_in_node(url: str, path: Path, *flags: str) -> dict[str, object]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, str(ROOT / "scripts" / "verify_bundle.mjs"), url, str(path), *flags],
                          capture_output=True, text=True, timeout=120)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == (0 if result["valid"] else 1)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("select", ["task-filter"])
def test_the_pages_task_lists_are_the_catalogues_tasks(select: str) -> None:
    """A visitor can find a model by every task an owner can give it (the catalogue's ``TASKS``): the page's list
    cannot drift from the catalogue (the listing form copies it: ``test_owner_webapp``)."""
    from html.parser import HTMLParser

    from proofmarket.marketplace.entries import TASKS

    class Options(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside, self.values = False, []  # type: ignore[var-annotated]

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            named = dict(attrs)
            if tag == "select":
                self.inside = named.get("id") == select
            elif tag == "option" and self.inside and named.get("value"):
                self.values.append(named["value"])

    parser = Options()
    parser.feed((ROOT / "src" / "proofmarket" / "api" / "static" / "app" / "index.html").read_text())
    assert parser.values == list(TASKS)


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


@pytest.mark.slow
def test_the_browser_verifies_a_bundle_rejects_a_tampered_one_and_fits_a_phone(served: str, mlp_id: str,
                                                                              tmp_path: Path) -> None:
    import httpx

    sync_playwright, chromium = chromium_or_skip()
    shots = ROOT / "tests" / "screenshots"
    shots.mkdir(exist_ok=True)
    body = httpx.post(f"{served}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120).json()
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(body["bundle"]))
    not_bundle = tmp_path / "notes.json"
    not_bundle.write_text(json.dumps({"hello": "world"}))
    with sync_playwright() as pw:  # type: ignore[operator]
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = with_axe(browser.new_page(viewport={"width": 1024, "height": 900}))
        page.set_default_timeout(90_000)  # a loaded CI machine
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(served) else None)
        page.goto(f"{served}/app/")
        page.wait_for_selector("#models:not([hidden])")
        assert mlp_id[:12] in page.inner_html("#models") or page.locator("#models tbody tr").count() >= 1
        page.screenshot(path=str(shots / "app-catalog.png"), full_page=True)
        page.click("#models tbody tr a")
        page.wait_for_selector("#model:not([hidden])")
        page.screenshot(path=str(shots / "app-model.png"), full_page=True)
        page.set_input_files("#bundle-file", str(bundle))
        page.click("#verify-button")
        page.wait_for_selector("#verify-status.ok, #verify-status.bad", timeout=60_000)
        status = page.text_content("#verify-status") or ""
        assert status.startswith("valid"), status
        assert serious_violations(page) == []  # the verdict and its checks
        page.screenshot(path=str(shots / "app-verified.png"), full_page=True)
        page.click("#tamper-button")
        page.wait_for_selector("#verify-status.bad", timeout=60_000)
        assert "NOT valid" in (page.text_content("#verify-status") or "")
        assert serious_violations(page) == []
        page.screenshot(path=str(shots / "app-tampered.png"), full_page=True)
        page.set_input_files("#bundle-file", str(not_bundle))
        page.click("#verify-button")
        page.wait_for_selector("#verify-status.bad")
        assert "not a proofmarket proof bundle" in (page.text_content("#verify-status") or "")
        page.keyboard.press("Tab")  # keyboard: the first stop is a labelled link or control
        assert page.evaluate("document.activeElement.tagName") in ("A", "INPUT", "SELECT", "BUTTON", "DIV")
        page.set_viewport_size({"width": 375, "height": 800})
        page.goto(f"{served}/app/")
        page.wait_for_selector("#models:not([hidden])")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling at 375 px
        page.screenshot(path=str(shots / "app-375px.png"), full_page=True)
        browser.close()
    assert outside == []  # the page asked nothing of any other origin
    assert status.split("in ")[-1].endswith("ms")


@pytest.mark.slow
def test_an_operator_lists_a_model_from_the_page_and_sees_the_compile_progress(make_app: AppFactory,
                                                                               tmp_path: Path) -> None:
    from api_helpers import ADMIN_TOKEN

    from proofmarket.samples import sample_path

    sync_playwright, chromium = chromium_or_skip()
    app = make_app(admin_token=ADMIN_TOKEN)
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"this is not an onnx file")
    with Served(app) as node:
        url = node.url
        with sync_playwright() as pw:  # type: ignore[operator]
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = with_axe(browser.new_page())
            page.set_default_timeout(90_000)  # a loaded CI machine
            page.goto(f"{url}/app/#owner")
            page.fill("#upload-token", "wrong-token-0123456789")
            page.set_input_files("#upload-onnx", str(sample_path("mlp")))
            page.set_input_files("#upload-samples", str(sample_path("mlp", "samples")))
            page.click("#upload-button")
            page.wait_for_selector("#upload-status.bad")
            assert "unauthorized" in (page.text_content("#upload-status") or "")
            page.fill("#upload-token", ADMIN_TOKEN)
            page.set_input_files("#upload-onnx", str(not_onnx))
            page.evaluate("document.getElementById('upload-status').className = ''")
            page.click("#upload-button")
            page.wait_for_selector("#upload-status.bad")
            assert "invalid_model" in (page.text_content("#upload-status") or "")
            page.set_input_files("#upload-onnx", str(sample_path("mlp")))
            page.fill("#upload-name", "uploaded-mlp")
            page.evaluate("document.getElementById('upload-status').className = ''")
            page.click("#upload-button")
            page.wait_for_selector("#upload-status.ok, #upload-status.bad", timeout=600_000)
            status = page.text_content("#upload-status") or ""
            assert status.startswith("compiled in") and "is served" in status, status
            page.wait_for_selector("text=uploaded-mlp")  # the catalog shows it
            assert serious_violations(page) == []  # the upload's progress and result
            page.screenshot(path=str(ROOT / "tests" / "screenshots" / "app-upload.png"), full_page=True)
            browser.close()


def _png_diagonal(n: int) -> bytes:
    """An n x n grey PNG: black on the diagonal, white elsewhere (written here: no imaging library needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(0 if x == y else 255 for x in range(n)) for y in range(n))
    header = struct.pack(">IIBBBBB", n, n, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.slow
def test_an_image_model_gets_a_drawing_pad_and_a_node_that_went_away_is_named(make_app: AppFactory,
                                                                              node_home: Path) -> None:
    """The sample digits model (input [1, 1, 8, 8]; attested here: no circuit to compile) gets a drawing pad
    that mouse and keyboard paint into the input; the call answers; then the node stops and the page says so."""
    from proofmarket.samples import sample_path
    from proofmarket.systems.workspace import Workspace

    sync_playwright, chromium = chromium_or_skip()
    app = make_app()
    ws: Workspace = app.state.services.workspace
    cnn_id, _ = ws.compile_attested(sample_path("cnn"), name="digits")
    app.state.services.catalog.register(cnn_id, price_atomic=10_000)
    with Served(app) as node:
        url = node.url
        with sync_playwright() as pw:  # type: ignore[operator]
            b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = with_axe(b.new_page(viewport={"width": 375, "height": 800}))
            page.set_default_timeout(90_000)  # a loaded CI machine
            page.goto(f"{url}/app/#model/{cnn_id}")
            page.wait_for_selector(".pad .pixel")
            assert page.locator(".pad .pixel").count() == 64
            assert page.evaluate("document.documentElement.scrollWidth") <= 375  # the pad fits a phone
            page.click(".pad .pixel >> nth=9")  # mouse: row 2, column 2
            page.focus(".pad .pixel >> nth=0")  # keyboard: the pad is one tab stop; arrows move, Space paints
            assert page.locator(".pad .pixel[tabindex='0']").count() == 1
            for key in ("ArrowDown", "ArrowDown", "ArrowRight", "ArrowRight"):  # row 3, column 3
                page.keyboard.press(key)
            page.keyboard.press("Space")
            doc = json.loads(page.input_value("#call-json"))
            flat = list(_flatten(doc["inputs"][next(iter(doc["inputs"]))]))
            assert [i for i, v in enumerate(flat) if v] == [9, 18] and len(flat) == 64
            assert page.get_attribute(".pad .pixel >> nth=18", "aria-pressed") == "true"
            image = node_home.parent / "diagonal.png"
            image.write_bytes(_png_diagonal(8))  # dark ink on white, as a scanned digit
            page.set_input_files(".pad-box input[type=file]", str(image))
            deadline = time.monotonic() + 30
            while True:
                doc = json.loads(page.input_value("#call-json"))
                flat = list(_flatten(doc["inputs"][next(iter(doc["inputs"]))]))
                if [i for i, v in enumerate(flat) if v > 0.5] == [9 * k for k in range(8)]:
                    break
                assert time.monotonic() < deadline, flat
                time.sleep(0.2)
            assert max(v for i, v in enumerate(flat) if i % 9) < 0.5  # the white page stays 0
            assert serious_violations(page) == []  # the pad, painted
            page.screenshot(path=str(ROOT / "tests" / "screenshots" / "app-drawing-pad.png"), full_page=True)
            page.click("#call-button")
            page.wait_for_selector("#call-status.ok, #call-status.bad", timeout=60_000)
            assert "attested" in (page.text_content("#call-status") or ""), page.text_content("#call-status")
            assert "no proof" in (page.text_content("#call-result") or "")

            node.stop()  # the node goes away
            page.evaluate("document.getElementById('call-status').className = ''")
            page.click("#call-button")
            page.wait_for_selector("#call-status.bad", timeout=30_000)
            assert "did not answer" in (page.text_content("#call-status") or "")
            assert "nothing was paid" in (page.text_content("#call-status") or "")
            b.close()


def _flatten(value: object) -> Iterator[float]:
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    else:
        yield float(value)  # type: ignore[arg-type]


def test_which_inputs_get_a_drawing_pad() -> None:
    """Images (H x W trailing dimensions, 4..32, other dimensions 1; or a flat square vector of 49..1024 values) get
    the pad; small vectors, colour images and long sequences get number fields or the JSON box."""
    node = shutil.which("node")
    assert node is not None
    call = (ROOT / "src" / "proofmarket" / "api" / "static" / "app" / "call.js").as_uri()
    shapes = [[1, 1, 8, 8], [8, 8], [1, 64], [64], [1, 784], [0, 1, 28, 28], [1, 3, 8, 8], [1, 8], [1, 16], [1, 100, 2],
              [1, 1, 64, 64], [1, 50]]
    script = (f"import('{call}').then((m) => console.log(JSON.stringify("
              f"{json.dumps(shapes)}.map((shape) => m.imageShape({{ shape }})))))")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        [8, 8], [8, 8], [8, 8], [8, 8], [28, 28], [28, 28], None, None, None, None, None, None]


def test_a_models_page_shows_its_line_of_versions_and_pages_the_catalogue(make_app: AppFactory, mlp_id: str) -> None:
    """A listing that supersedes another shows the line (oldest first, the latest sold one named, each a link); the
    catalogue pages through the node's search with its More button."""
    sync_playwright, chromium = chromium_or_skip()
    app = make_app()
    services = app.state.services
    store = services.workspace.store
    manifest = store.get_json(mlp_id)
    owner = "0x" + "ab" * 20
    line: list[str] = []
    for i in range(30):  # 30 listings: two pages of 25
        model_id = store.put_json({**manifest, "name": f"line-{i:02d}"})
        services.catalog.repo.upsert(model_id, name="iris" if i < 3 else f"other-{i:02d}", price_atomic=1000 + i,
                                     owner=owner, supersedes=line[-1] if 0 < i < 3 else None)
        if i < 3:
            line.append(model_id)
    with Served(app) as node, sync_playwright() as pw:  # type: ignore[operator]
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 375, "height": 800})
        page.set_default_timeout(90_000)
        page.goto(f"{node.url}/app/#catalog")
        page.wait_for_selector("#models:not([hidden])")
        assert page.locator("#models tbody tr").count() == 25
        page.click("#catalog-more")
        deadline = time.monotonic() + 60  # polled here: the page's CSP forbids wait_for_function's string eval
        while page.locator("#models tbody tr").count() != 30:
            assert time.monotonic() < deadline, page.text_content("#catalog-status")
            time.sleep(0.1)
        assert page.is_hidden("#catalog-more")
        page.goto(f"{node.url}/app/#model/{line[1]}")
        page.wait_for_selector("#model-versions-block:not([hidden])")
        items = page.locator("#model-versions li")
        assert items.count() == 3
        assert [items.nth(i).locator("a").get_attribute("href") for i in range(3)] == [f"#model/{m}" for m in line]
        assert "this version" in (items.nth(1).text_content() or "")
        assert "latest" in (items.nth(2).text_content() or "")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        b.close()
