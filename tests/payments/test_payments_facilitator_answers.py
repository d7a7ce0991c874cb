"""A facilitator's answer is size- and depth-checked before the x402 SDK parses it (issue 20, P3-03): whoever
answers at the facilitator's URL cannot crash the node with nested JSON; the node sees facilitator_unavailable."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from proofmarket.core.errors import FacilitatorUnavailable
from proofmarket.payments.facilitators import remote_facilitator

NESTED = b"[" * 500_000 + b"]" * 500_000
SUPPORTED = b'{"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:31337"}], "extensions": []}'


@pytest.fixture
def facilitator() -> Iterator[tuple[str, dict[str, bytes]]]:
    answers: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = answers[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()


def test_a_nested_facilitator_answer_is_refused_before_parsing(facilitator: tuple[str, dict[str, bytes]]) -> None:
    url, answers = facilitator
    answers["/supported"] = SUPPORTED
    client = remote_facilitator(url)
    assert [k.scheme for k in client.get_supported().kinds] == ["exact"]  # an ordinary answer is parsed
    answers["/supported"] = NESTED
    with pytest.raises(FacilitatorUnavailable, match="deeper than"):
        client.get_supported()
    answers["/supported"] = b"[" + b"0," * 600_000 + b"0]"  # 1.2 MB: over the limit
    with pytest.raises(FacilitatorUnavailable, match="over the limit"):
        client.get_supported()
    client.close()
