"""The web app's files go out gzip-compressed to a browser that takes it (EZKL's 9.8 MB verifier among them), as
they are to one that does not, and a browser's copy is kept (ETag, 304) under the page's no-cache rule."""

from __future__ import annotations

from pathlib import Path

from api_helpers import AppFactory
from fastapi.testclient import TestClient

STATIC = Path(__file__).resolve().parents[2] / "src/proofmarket/api/static/app"


def test_files_are_compressed_for_a_browser_that_takes_it_and_revalidated(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        for path, name in (("/app/", "index.html"), ("/app/app.js", "app.js"), ("/app/style.css", "style.css")):
            raw = (STATIC / name).read_bytes()
            zipped = client.get(path, headers={"Accept-Encoding": "gzip"})
            assert zipped.status_code == 200 and zipped.headers["content-encoding"] == "gzip"
            assert zipped.content == raw  # httpx undoes the encoding: the same bytes
            assert "content-security-policy" in zipped.headers and zipped.headers["vary"] == "Accept-Encoding"
            plain = client.get(path, headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers and plain.content == raw
            again = client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
            assert int(zipped.headers["content-length"]) < len(raw)  # fewer bytes on the wire
        assert client.get("/app/../pyproject.toml").status_code == 404  # still only the listed files
        assert client.get("/app/nothing.js", headers={"Accept-Encoding": "gzip"}).status_code == 404
