"""Every answer carries an X-Request-ID (the client's when sane, else a new one); in JSON logs each line of the
request names it, and the line that creates a call names the call beside it."""

from __future__ import annotations

import io
import json
import logging

from api_helpers import AppFactory
from fastapi.testclient import TestClient

from proofmarket.core.logs import CALL_ID, REQUEST_ID, JsonFormatter, configure, request_id_from


def test_the_answer_carries_the_request_id(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        given = client.get("/health", headers={"X-Request-ID": "trace-42.a_b:c"})
        made = client.get("/health")
        hostile = client.get("/health", headers={"X-Request-ID": "x" * 300})
    assert given.headers["X-Request-ID"] == "trace-42.a_b:c"
    assert len(made.headers["X-Request-ID"]) == 32 and made.headers["X-Request-ID"] != given.headers["X-Request-ID"]
    assert len(hostile.headers["X-Request-ID"]) == 32  # not echoed: a new one


def test_json_log_lines_name_the_request_and_the_call() -> None:
    root = logging.getLogger()
    kept, level = list(root.handlers), root.level
    assert configure("json") is None  # the test runner's handlers are there: left alone, as basicConfig does
    handler = configure("json", force=True)
    assert handler is not None
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        request, call = REQUEST_ID.set("req-1"), CALL_ID.set("call-9")
        logging.getLogger("proofmarket.test").info("call %s created", "call-9")
        REQUEST_ID.reset(request)
        CALL_ID.reset(call)
        logging.getLogger("proofmarket.test").warning("no ids here")
    finally:
        root.removeHandler(handler)
        for old in kept:
            root.addHandler(old)
        root.setLevel(level)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "req-1" and first["call_id"] == "call-9" and first["message"] == "call call-9 created"
    assert first["level"] == "info" and first["logger"] == "proofmarket.test" and first["ts"].endswith("Z")
    assert "request_id" not in second and second["level"] == "warning"
    assert request_id_from("bad id with spaces") != "bad id with spaces"
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def test_a_call_keeps_its_request_id_and_the_workers_lines_for_it_name_it(mlp_client: TestClient, mlp_id: str) -> None:
    """The request id is stored on the call: its job shows it, and the lines its worker thread logs while running
    it (another thread here, another process with the celery queue) name the request beside the call."""
    from api_helpers import mlp_input

    seen: list[tuple[str | None, str | None, str]] = []

    class Remember(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((REQUEST_ID.get(), CALL_ID.get(), record.threadName))

    handler = Remember(logging.DEBUG)
    logger = logging.getLogger("proofmarket")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        answer = mlp_client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input(), headers={"X-Request-ID": "trace-77"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]
    job = mlp_client.get(f"/v1/jobs/{job_id}", headers={"X-Job-Token": answer.json()["access_token"]}).json()
    assert job["request_id"] == "trace-77"
    in_call = [(request, thread) for request, call, thread in seen if call == job_id]
    assert in_call and all(request == "trace-77" for request, _ in in_call)
