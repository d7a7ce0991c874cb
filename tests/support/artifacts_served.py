"""A node's ``GET /v1/artifacts/{cid}`` over a store, for tests that fetch a model by CID (a test double of the
route: its allowlist and caching are the node's own tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def artifacts_served(store: Any) -> Iterator[str]:
    """Serve ``store``'s blobs by CID; the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            cid = self.path.rsplit("/", 1)[-1]
            found = self.path.startswith("/v1/artifacts/") and store.has(cid)
            body = store.get(cid) if found else b'{"error": {"code": "artifact_not_found", "message": "none"}}'
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/octet-stream" if found else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
