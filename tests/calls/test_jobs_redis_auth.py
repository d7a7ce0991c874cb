"""Redis with AUTH (P3-16): a redis-server started with ``requirepass`` and a PROOFMARKET_REDIS_URL that carries the
password (``redis://:PASSWORD@host:port/0``) runs the celery queue end to end (node and ``proofmarket worker``
subprocess); a wrong or missing password stops the node and the worker with ``queue_unavailable`` saying the password
was refused; the password never shows in /health, in the node's errors or in the worker's log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jobs_helpers import stop_processes

from proofmarket.api import create_app
from proofmarket.calls.celery_queue import QueueUnavailable, check_redis
from proofmarket.calls.redis_server import RedisServer, redis_server
from proofmarket.core.settings import Settings

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-Pa55-x9"


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    with redis_server(password=PASSWORD) as server:
        if server is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is needed in CI (.ci/run installs it)")
            pytest.skip("redis-server is not installed")
        yield server


def _env(home: Path, db_url: str, redis_url: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
            "PROOFMARKET_HOME": str(home), "PROOFMARKET_DATABASE_URL": db_url, "PROOFMARKET_QUEUE": "celery",
            "PROOFMARKET_REDIS_URL": redis_url, "PROOFMARKET_PROOF_TIMEOUT_S": "60"}


def _wrong(server: RedisServer, password: str | None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{server.port}/0"


def test_a_password_in_the_url_runs_the_queue_and_never_shows(locked: RedisServer, mlp_store: tuple[Path, str],
                                                              tmp_path: Path) -> None:
    assert PASSWORD in locked.url
    home, model_id = mlp_store
    db_url = f"sqlite:///{tmp_path / 'node.db'}"
    settings = Settings(_env_file=None, home=home, database_url=db_url, queue="celery",  # type: ignore[call-arg]
                        redis_url=locked.url, prover_workers=1, infer_wait_s=60.0, proof_timeout_s=60.0)
    app = create_app(settings)
    app.state.services.catalog.register(model_id, price_atomic=10_000)
    log_path = tmp_path / "worker.log"
    with TestClient(app) as client, log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "worker", "--name", "auth-w1"],
                                  env=_env(home, db_url, locked.url), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            health: dict[str, Any] = client.get("/health").json()
            while not (health["workers"] >= 1 and health["provers_warm"] >= 1):
                assert time.monotonic() < deadline and worker.poll() is None, (health, log_path.read_text())
                time.sleep(0.2)
                health = client.get("/health").json()
            body = client.post(f"/v1/models/{model_id}/infer", json={"input_data": [[0.3] * 8]}).json()
            token = {"X-Job-Token": body.get("access_token", "")}
            while body["status"] not in ("proved", "settled", "failed"):
                assert time.monotonic() < deadline + 120, body
                time.sleep(0.1)
                body = client.get(f"/v1/jobs/{body['id']}", headers=token).json()
            assert body["status"] == "proved", body
            for path in ("/health", "/metrics", "/dashboard"):
                assert PASSWORD not in client.get(path).text, path
        finally:
            stop_processes(worker)
    app.state.services.close()
    assert PASSWORD not in log_path.read_text(errors="replace")


@pytest.mark.parametrize("password", ["not-the-password", None])
def test_a_wrong_or_missing_password_stops_node_and_worker_with_a_clear_error(
        locked: RedisServer, password: str | None, mlp_store: tuple[Path, str], tmp_path: Path) -> None:
    url = _wrong(locked, password)
    with pytest.raises(QueueUnavailable) as caught:
        check_redis(url)
    assert caught.value.code == "queue_unavailable" and "password" in caught.value.message
    if password:
        assert password not in caught.value.message and password not in str(caught.value.to_dict())
    env = _env(mlp_store[0], f"sqlite:///{tmp_path / 'n.db'}", url)
    for command in (["node", "--port", "1"], ["worker"]):
        done = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", *command], env=env,
                              capture_output=True, text=True, timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode == 4, output
        assert "queue_unavailable" in output and "password" in output, output
        if password:
            assert password not in output, output


def test_a_password_in_the_query_is_masked_too(locked: RedisServer, mlp_store: tuple[Path, str],
                                              tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{locked.port}/0?password=wrong-one-77"
    with pytest.raises(QueueUnavailable) as caught:
        check_redis(url)
    assert "wrong-one-77" not in caught.value.message and "wrong-one-77" not in str(caught.value.to_dict())
    done = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "worker"], capture_output=True, text=True,
                          env=_env(mlp_store[0], f"sqlite:///{tmp_path / 'n.db'}", url), timeout=120)
    assert done.returncode == 4 and "wrong-one-77" not in done.stdout + done.stderr, done.stdout + done.stderr
