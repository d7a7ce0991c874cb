"""A streamed generation on the Celery engine (issue 79): a ``proofmarket worker`` process generates and signs it,
its tokens reach the node's stream through Redis (``calls/events.py``), and the node itself generates nothing."""

from __future__ import annotations

import json
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
from proofmarket.calls.redis_server import redis_server
from proofmarket.core.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def celery_node(attested_home: Path, lm_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with redis_server() as redis:
        if redis is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is needed in CI (.ci/run installs it)")
            pytest.skip("redis-server is not installed")
        db = f"sqlite:///{tmp_path_factory.mktemp('celery-stream-db') / 'node.db'}"
        settings = Settings(_env_file=None, home=attested_home, database_url=db, queue="celery",  # type: ignore
                            redis_url=redis.url, prover_workers=1)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
               "PROOFMARKET_HOME": str(attested_home), "PROOFMARKET_DATABASE_URL": db,
               "PROOFMARKET_REDIS_URL": redis.url, "PROOFMARKET_QUEUE": "celery"}
        app = create_app(settings)
        app.state.services.catalog.register(lm_id, price_atomic=2_000)
        log = (tmp_path_factory.mktemp("celery-stream-worker") / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "worker", "--name", "gen-1"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            with TestClient(app) as client:
                deadline = time.monotonic() + 120
                while client.get("/health").json()["workers"] < 1:
                    assert time.monotonic() < deadline and worker.poll() is None, "the worker did not come up"
                    time.sleep(0.2)
                yield client
        finally:
            stop_processes(worker)
            app.state.services.close()


def _events(response: Any) -> list[tuple[str, Any]]:
    return [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1][6:]))
            for block in response.read().decode().strip().split("\n\n") if not block.startswith(":")]  # a ping


def test_a_worker_generates_and_its_tokens_reach_the_stream_through_redis(
        celery_node: TestClient, lm_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    node_attested = celery_node.app.state.services.attested  # type: ignore[attr-defined]

    def here(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the node generated: a Celery worker must")

    monkeypatch.setattr(node_attested, "run", here)
    with celery_node.stream("POST", f"/v1/models/{lm_id}/generate",
                            json={"prompt": "the market", "max_tokens": 20, "stream": True}) as response:
        assert response.status_code == 200
        events = _events(response)
    kinds = [k for k, _ in events]
    assert kinds.count("token") == 20 and kinds[-1] == "result", kinds
    result = events[-1][1]
    assert [d["token"] for k, d in events if k == "token"] == result["tokens"]  # each token, in order, before it
    assert [d["commitment"] for k, d in events if k == "commitment"] == result["bundle"]["proof"]["commitments"]
    job = celery_node.app.state.services.calls.get(result["job_id"])  # type: ignore[attr-defined]
    assert (job.system, job.status) == ("proofmarket-attested-toploc-v1", "proved")
