"""A sliced model on the celery engine: two ``proofmarket worker`` processes over a real redis-server share one call's
slices (each proves some), and a worker killed while it proves a slice loses nothing: the worker running the call
takes the slice back, the call is proved once, and its bundle verifies."""

from __future__ import annotations

import json
import os
import re
import signal
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
from proofmarket.calls.redis_server import RedisServer
from proofmarket.core.settings import Settings
from proofmarket.samples import sample_path
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.sliced import verify_sliced
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sliced_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("slicedhome")
    ws = Workspace(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    try:
        samples = json.loads(sample_path("mlp", "samples").read_text())
        return home, str(ws.compile_sliced(sample_path("mlp"), samples, 2, profile=PrivacyProfile(),
                                           candidates=[Candidate(256, 2, 7, 1)]).model_id)
    finally:
        ws.close()


class Node:
    def __init__(self, home: Path, model_id: str, redis: RedisServer, tmp_path: Path) -> None:
        import redis as redis_lib

        self.model_id, self.logs, self.workers = model_id, tmp_path, {}
        self.r = redis_lib.Redis.from_url(redis.url)
        self.r.flushall()
        db_url = f"sqlite:///{tmp_path / 'node.db'}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
                    "PROOFMARKET_HOME": str(home), "PROOFMARKET_DATABASE_URL": db_url,
                    "PROOFMARKET_REDIS_URL": redis.url, "PROOFMARKET_PROOF_TIMEOUT_S": "120",
                    "PROOFMARKET_PROVER_WORKERS": "1"}
        self.app = create_app(Settings(_env_file=None, home=home, database_url=db_url,  # type: ignore[call-arg]
                                       queue="celery", redis_url=redis.url, proof_timeout_s=120.0, infer_wait_s=1.0))
        self.app.state.services.catalog.register(model_id, price_atomic=10_000)

    def start_worker(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.workers[name] = subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "worker", "--name", name],
                                              env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_workers(self, client: TestClient, n: int) -> None:
        deadline = time.monotonic() + 120
        while (health := client.get("/health").json())["provers_warm"] < n:
            assert time.monotonic() < deadline, health
            time.sleep(0.2)

    def close(self) -> None:
        stop_processes(*self.workers.values())
        self.app.state.services.close()


@pytest.fixture
def node(sliced_home: tuple[Path, str], live_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[Node, TestClient]]:
    made = Node(*sliced_home, live_redis, tmp_path)
    try:
        with TestClient(made.app) as client:
            for name in ("w1", "w2"):
                made.start_worker(name)
            made.wait_workers(client, 2)
            yield made, client
    finally:
        made.close()


def wait_final(client: TestClient, job: dict[str, Any], timeout_s: float = 240) -> dict[str, Any]:
    token = {"X-Job-Token": job["access_token"]}
    deadline = time.monotonic() + timeout_s
    body = client.get(f"/v1/jobs/{job['id']}", headers=token).json()
    while body["status"] not in ("proved", "settled", "failed"):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
        body = client.get(f"/v1/jobs/{job['id']}", headers=token).json()
    return dict(body)


def proven_by(node: Node, call_id: str) -> dict[int, str]:
    """Which worker proved each slice of the call, from the workers' own logs."""
    found: dict[int, str] = {}
    for name in node.workers:
        for k, who in re.findall(rf"call {call_id}: slice (\d+) proven by (\w+)", node.log(name)):
            assert who == name
            found[int(k)] = who
    return found


def test_one_call_s_slices_are_proven_on_both_workers(node: tuple[Node, TestClient],
                                                      sliced_home: tuple[Path, str]) -> None:
    made, client = node
    job = client.post(f"/v1/models/{made.model_id}/infer?mode=async", json={"input_data": [[0.2] * 8]}).json()
    body = wait_final(client, job)
    assert body["status"] == "proved", body
    assert sorted(proven_by(made, job["id"])) == [0, 1]
    assert set(proven_by(made, job["id"]).values()) == {"w1", "w2"}  # one call, both workers
    store = LocalStore(sliced_home[0] / "store")
    assert verify_sliced(store.get_json(body["result"]["bundle_cid"]), store).valid
    assert made.r.keys("proofmarket:slices:*") == []  # the tensors between slices are gone with the call


def test_a_worker_killed_mid_slice_loses_nothing(node: tuple[Node, TestClient], sliced_home: tuple[Path, str]) -> None:
    made, client = node
    job = client.post(f"/v1/models/{made.model_id}/infer?mode=async", json={"input_data": [[0.7] * 8]}).json()
    deadline = time.monotonic() + 120
    victim = None
    while victim is None:  # the worker proving a slice of a call another worker runs: kill -9 while it proves
        assert time.monotonic() < deadline, "no worker took a slice of another's call"
        running = {json.loads(made.r.get(key) or b"{}").get("job"): json.loads(made.r.get(key) or b"{}").get("name")
                   for key in made.r.scan_iter("proofmarket:worker:*")}
        for key in made.r.scan_iter(f"proofmarket:slices:{job['id']}:*:taken"):
            holder = (made.r.get(key) or b"").decode()
            if holder and holder != running.get(job["id"]):
                victim = (holder, int(key.decode().split(":")[3]))
        time.sleep(0.01)
    os.kill(made.workers[victim[0]].pid, signal.SIGKILL)
    assert not made.r.exists(f"proofmarket:slices:{job['id']}:{victim[1]}:done")  # killed before it finished
    body = wait_final(client, job)
    assert body["status"] == "proved", body
    assert proven_by(made, job["id"])[victim[1]] != victim[0]  # the killed worker's slice, proven by the other
    store = LocalStore(sliced_home[0] / "store")
    assert verify_sliced(store.get_json(body["result"]["bundle_cid"]), store).valid
    row = client.app.state.services.calls.get(job["id"])  # type: ignore[attr-defined]
    assert row.attempts == 1 and row.bundle_cid == body["result"]["bundle_cid"]  # proved once, not run again
