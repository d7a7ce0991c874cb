"""One suite for both job queues: the local queue (prover processes in the node) and the celery queue
(``proofmarket worker`` subprocesses over a real redis-server). Each test runs on both unless it is about the
distributed engine only (killed workers, a restarted Redis, an unreachable Redis).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jobs_helpers import stop_processes
from pg_server import fresh_database, restart

from proofmarket.api import create_app
from proofmarket.calls.redis_server import RedisServer, redis_server
from proofmarket.core.settings import Settings
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.verify import verify_bundle

pytestmark = pytest.mark.slow
INPUT = {"input_data": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer | None]:
    with redis_server() as server:
        yield server


@dataclass
class Backend:
    name: str
    home: Path
    model_id: str
    env: dict[str, str]
    client: TestClient
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: RedisServer | None = None
    db_url: str = ""

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.home.parent / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "worker", "--name", name],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def wait_workers(self, n: int, timeout_s: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            health = self.client.get("/health").json()
            if health["workers"] >= n and health["provers_warm"] >= n:
                return dict(health)
            assert time.monotonic() < deadline, health
            time.sleep(0.2)

    def infer(self, doc: dict[str, Any], timeout_s: float = 120.0) -> dict[str, Any]:
        response = self.client.post(f"/v1/models/{self.model_id}/infer", json=doc)
        body: dict[str, Any] = response.json()
        if response.status_code == 202:  # still running: poll the job
            token = {"X-Job-Token": body["access_token"]}
            deadline = time.monotonic() + timeout_s
            while body["status"] not in ("proved", "settled", "failed"):
                assert time.monotonic() < deadline, body
                time.sleep(0.1)
                body = self.client.get(f"/v1/jobs/{body['id']}", headers=token).json()
        return body


def _settings(home: Path, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "database_url": db_url, "prover_workers": 1,
                              "infer_wait_s": 60.0, "proof_timeout_s": 60.0, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(params=["local", "celery"])
def backend(request: pytest.FixtureRequest, mlp_store: tuple[Path, str], redis: RedisServer | None,
            tmp_path: Path, pg_url: str | None) -> Iterator[Backend]:
    """The local queue on SQLite; the celery queue on PostgreSQL when there is one (always in CI)."""
    home, model_id = mlp_store
    db_url = f"sqlite:///{tmp_path / 'node.db'}"
    if request.param == "celery" and pg_url is not None:
        db_url = fresh_database(pg_url)
    if request.param == "celery" and redis is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is needed in CI (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    extra: dict[str, Any] = {}
    if request.param == "celery":
        assert redis is not None
        redis_flush(redis)
        extra = {"queue": "celery", "redis_url": redis.url}
    settings = _settings(home, db_url, **extra)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
           "PROOFMARKET_HOME": str(home), "PROOFMARKET_DATABASE_URL": db_url,
           "PROOFMARKET_REDIS_URL": redis.url if redis else "", "PROOFMARKET_PROOF_TIMEOUT_S": "60"}
    app = create_app(settings)
    app.state.services.catalog.register(model_id, price_atomic=10_000)
    with TestClient(app) as client:
        b = Backend(request.param, tmp_path / "home-marker", model_id, env, client, redis=redis, db_url=db_url)
        b.home.mkdir()
        if request.param == "celery":
            b.start_worker("w1")
            b.wait_workers(1)
        try:
            yield b
        finally:
            stop_processes(*b.workers)
    app.state.services.close()


def redis_flush(server: RedisServer) -> None:
    import redis as redis_lib

    redis_lib.Redis.from_url(server.url).flushall()


def test_a_job_is_proved_and_its_bundle_verifies(backend: Backend, mlp_store: tuple[Path, str]) -> None:
    body = backend.infer({"input_data": [[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]]})
    assert body["status"] == "proved", body
    assert verify_bundle(body["bundle"], LocalStore(mlp_store[0] / "store")).valid
    health = backend.client.get("/health").json()
    assert health["status"] == "ok" and health["queue"] == backend.name and health["workers"] >= 1


def test_a_bad_input_fails_before_the_queue_and_a_failed_proof_keeps_its_code(backend: Backend) -> None:
    bad = backend.client.post(f"/v1/models/{backend.model_id}/infer", json={"input_data": [[1.0, 2.0]]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "input_shape"


def test_concurrent_jobs_all_complete_and_none_is_lost(backend: Backend) -> None:
    docs = [{"input_data": [[0.05 * i + 0.01 * j for j in range(8)]]} for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(backend.infer, docs))
    assert [b["status"] for b in bodies] == ["proved"] * 6, bodies
    assert len({b["job_id"] for b in bodies}) == 6


def test_a_model_compiled_with_another_ezkl_is_refused_not_proved(backend: Backend, mlp_store: tuple[Path, str],
                                                                  tmp_path: Path) -> None:
    home, model_id = mlp_store
    store = LocalStore(home / "store")
    manifest = store.get_json(model_id)
    other = store.put_json({**manifest, "ezkl_version": "0.0.1"})  # the same keys, another EZKL recorded
    backend.client.app.state.services.catalog.register(other, price_atomic=10_000)  # type: ignore[attr-defined]
    response = backend.client.post(f"/v1/models/{other}/infer", json=INPUT)
    body = response.json()
    if response.status_code == 202:
        token = {"X-Job-Token": body["access_token"]}
        deadline = time.monotonic() + 60
        while body["status"] not in ("failed", "proved"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
            body = backend.client.get(f"/v1/jobs/{body['id']}", headers=token).json()
        assert body["error"]["code"] == "ezkl_version_mismatch", body
    else:
        assert response.status_code == 409 and body["error"]["code"] == "ezkl_version_mismatch", body


def test_a_killed_worker_s_job_completes_on_another(backend: Backend) -> None:
    if backend.name != "celery":
        pytest.skip("distributed engine only")
    backend.start_worker("w2")
    backend.wait_workers(2)
    response = backend.client.post(f"/v1/models/{backend.model_id}/infer?mode=async",
                                   json={"input_data": [[0.33] * 8]})
    job = response.json()
    token = {"X-Job-Token": job["access_token"]}
    deadline = time.monotonic() + 30
    victim = None
    while victim is None:  # find the worker running it, from its heartbeat
        assert time.monotonic() < deadline
        import redis as redis_lib

        assert backend.redis is not None
        r = redis_lib.Redis.from_url(backend.redis.url)
        for key in r.scan_iter("proofmarket:worker:*"):
            doc = json.loads(r.get(key) or b"{}")
            if doc.get("job") == job["id"]:
                victim = doc
        time.sleep(0.05)
    os.kill(int(victim["pid"]), signal.SIGKILL)  # kill -9 mid-proof
    deadline = time.monotonic() + 120
    body = backend.client.get(f"/v1/jobs/{job['id']}", headers=token).json()
    while body["status"] not in ("proved", "failed"):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
        body = backend.client.get(f"/v1/jobs/{job['id']}", headers=token).json()
    assert body["status"] == "proved", body


def test_a_redis_restart_loses_no_job(backend: Backend) -> None:
    if backend.name != "celery":
        pytest.skip("distributed engine only")
    assert backend.redis is not None
    docs = [{"input_data": [[0.02 * i + 0.03 * j for j in range(8)]]} for i in range(4)]
    ids = [backend.client.post(f"/v1/models/{backend.model_id}/infer?mode=async", json=d).json() for d in docs]
    backend.redis.stop()
    time.sleep(1)
    backend.redis.start()
    deadline = time.monotonic() + 180
    for job in ids:
        token = {"X-Job-Token": job["access_token"]}
        body = backend.client.get(f"/v1/jobs/{job['id']}", headers=token).json()
        while body["status"] not in ("proved", "failed"):
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
            body = backend.client.get(f"/v1/jobs/{job['id']}", headers=token).json()
        assert body["status"] == "proved", body


def test_an_unreachable_redis_stops_the_node_with_a_clear_error(tmp_path: Path, mlp_store: tuple[Path, str]) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
           "PROOFMARKET_HOME": str(mlp_store[0]), "PROOFMARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}",
           "PROOFMARKET_QUEUE": "celery", "PROOFMARKET_REDIS_URL": "redis://127.0.0.1:1/0"}
    for command in (["node", "--port", "1"], ["worker"]):
        done = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", *command], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 4, done.stdout + done.stderr
        assert "queue_unavailable" in done.stdout + done.stderr and "Redis" in done.stdout + done.stderr


def test_two_nodes_on_one_database_answer_each_other_s_jobs(backend: Backend, mlp_store: tuple[Path, str],
                                                            tmp_path: Path) -> None:
    if backend.name != "celery":
        pytest.skip("several nodes need the distributed queue")
    home, model_id = mlp_store
    assert backend.redis is not None
    other = create_app(_settings(home, backend.db_url, queue="celery", redis_url=backend.redis.url))
    other.state.services.catalog.register(model_id, price_atomic=10_000)
    with TestClient(other) as second:
        job = backend.client.post(f"/v1/models/{model_id}/infer?mode=async", json={"input_data": [[0.44] * 8]}).json()
        token = {"X-Job-Token": job["access_token"]}
        deadline = time.monotonic() + 60
        body = second.get(f"/v1/jobs/{job['id']}", headers=token).json()  # asked on the other node
        while body["status"] != "proved":
            assert time.monotonic() < deadline and body["status"] != "failed", body
            time.sleep(0.1)
            body = second.get(f"/v1/jobs/{job['id']}", headers=token).json()
        assert second.get("/health").json()["workers"] >= 1
    other.state.services.close()


def test_a_cached_repeat_never_reaches_a_worker_and_is_counted(backend: Backend) -> None:
    import re

    doc = {"input_data": [[0.61, 0.62, 0.63, 0.64, 0.65, 0.66, 0.67, 0.68]]}
    first = backend.infer(doc)
    started = time.perf_counter()
    again = backend.infer(doc)
    elapsed = time.perf_counter() - started
    assert again["bundle_cid"] == first["bundle_cid"] and again["job_id"] != first["job_id"]
    metrics = backend.client.get("/metrics").text
    hits = re.search(r'proofmarket_proof_cache_total\{result="hit"\} ([0-9.]+)', metrics)
    assert hits is not None and float(hits.group(1)) >= 1
    assert elapsed < 5  # answered without a proof (the bench measures the real figure)


def test_a_postgresql_restart_under_load_loses_no_job(backend: Backend, pg_url: str | None) -> None:
    if backend.name != "celery" or pg_url is None:
        pytest.skip("the distributed queue on PostgreSQL")
    docs = [{"input_data": [[0.07 * i + 0.011 * j for j in range(8)]]} for i in range(4)]
    jobs = [backend.client.post(f"/v1/models/{backend.model_id}/infer?mode=async", json=d).json() for d in docs]
    restart(pg_url)  # every connection of the node and the workers is cut
    later = backend.infer({"input_data": [[0.91] * 8]})  # the node answers again (its pool reconnects)
    assert later["status"] == "proved", later
    deadline = time.monotonic() + 180
    for job in jobs:
        token = {"X-Job-Token": job["access_token"]}
        body = backend.client.get(f"/v1/jobs/{job['id']}", headers=token).json()
        while body["status"] not in ("proved", "failed"):
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
            body = backend.client.get(f"/v1/jobs/{job['id']}", headers=token).json()
        assert body["status"] == "proved", body.get("error")
