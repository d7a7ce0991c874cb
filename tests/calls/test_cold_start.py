"""A cold start: 2 nodes (``proofmarket node``) and 2 workers (``proofmarket worker``, celery over a real
redis-server) started at the same instant on a fresh database all come up. Before migrations ran under a lock,
they crashed setting up the schema (UniqueViolation on alembic_version, "table already exists").
Also: a held migration lock makes ``Database.migrate`` wait, and ``proofmarket db upgrade/current``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from jobs_helpers import stop_processes
from pg_server import fresh_database
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from proofmarket.calls.redis_server import RedisServer, redis_server
from proofmarket.cli.main import app as cli
from proofmarket.db import Database
from proofmarket.db.engine import MIGRATION_LOCK_KEY, _flock

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer | None]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_url(request: pytest.FixtureRequest, pg_url: str | None, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'node.db'}"
    if pg_url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is needed in CI")
        pytest.skip("no PostgreSQL here")
    return fresh_database(pg_url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(port: int) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = response.json()
    return body


def test_two_nodes_and_two_workers_started_at_once_on_a_fresh_database_all_come_up(
        fresh_url: str, redis: RedisServer | None, tmp_path: Path) -> None:
    if redis is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is needed in CI (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    home, go = tmp_path / "home", tmp_path / "go"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
           "PROOFMARKET_HOME": str(home), "PROOFMARKET_DATABASE_URL": fresh_url, "PROOFMARKET_QUEUE": "celery",
           "PROOFMARKET_REDIS_URL": redis.url}
    ports = [_free_port(), _free_port()]
    commands = [["node", "--port", str(ports[0])], ["node", "--port", str(ports[1])],
                ["worker", "--name", "cold1"], ["worker", "--name", "cold2"]]
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i, args in enumerate(commands):
            log = tmp_path / f"proc{i}.log"
            with log.open("wb") as out:
                procs.append((subprocess.Popen([sys.executable, str(HERE / "cold_start_proc.py"),
                                                str(tmp_path / f"ready{i}"), str(go), *args],
                                               env=env, stdout=out, stderr=subprocess.STDOUT), log))
        _wait(lambda: all((tmp_path / f"ready{i}").exists() for i in range(len(commands))), procs, 240)
        go.write_text("go")  # all four start up now
        bodies: dict[int, dict[str, Any] | None] = {}

        def all_up() -> bool:
            for port in ports:
                bodies[port] = _health(port)
            return all(b is not None and b["status"] == "ok" and b["workers"] >= 2 for b in bodies.values())

        _wait(all_up, procs, 300)
        assert all(b is not None and b["database"] and b["queue"] == "celery" for b in bodies.values()), bodies
    finally:
        stop_processes(*(proc for proc, _ in procs))
    logs = "\n".join(log.read_text(errors="replace") for _, log in procs)
    assert "UniqueViolation" not in logs and "cannot migrate the database" not in logs, logs
    db = Database(fresh_url)
    try:
        assert db.revision() == Database.head()
    finally:
        db.close()


def _wait(ready: Any, procs: list[tuple[subprocess.Popen[bytes], Path]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        for proc, log in procs:
            assert proc.poll() is None, f"a process exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
        assert time.monotonic() < deadline, "\n".join(log.read_text(errors="replace") for _, log in procs)
        time.sleep(0.2)


def _migrate_in_background(db: Database) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            db.migrate()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@contextmanager
def _migration_lock_held(url: str) -> Iterator[None]:
    """Hold the lock ``Database.migrate`` takes, as another migrator would."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with _flock(Path(f"{path}.migrate.lock")):
            yield
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            yield
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


def test_a_held_migration_lock_makes_migrate_wait(fresh_url: str) -> None:
    """Another migrator holds the lock: migrate waits (nothing created), then upgrades once it is released."""
    db = Database(fresh_url)
    try:
        with _migration_lock_held(fresh_url):
            thread, errors = _migrate_in_background(db)
            thread.join(1.5)
            assert thread.is_alive() and db.revision() is None  # waiting, nothing created
        thread.join(60)
        assert not thread.is_alive() and errors == []
        assert db.revision() == Database.head()
    finally:
        db.close()


def test_db_upgrade_and_current_commands(fresh_url: str) -> None:
    runner = CliRunner()
    behind = runner.invoke(cli, ["db", "current", "--url", fresh_url, "--json"])
    assert behind.exit_code == 1 and json.loads(behind.stdout)["revision"] is None, behind.output
    up = runner.invoke(cli, ["db", "upgrade", "--url", fresh_url, "--json"])
    assert up.exit_code == 0, up.output
    doc = json.loads(up.stdout)
    assert doc["from"] is None and doc["revision"] == Database.head()
    again = runner.invoke(cli, ["db", "upgrade", "--url", fresh_url])
    assert again.exit_code == 0 and "already current" in again.stdout, again.output
    current = runner.invoke(cli, ["db", "current", "--url", fresh_url, "--json"])
    assert current.exit_code == 0 and json.loads(current.stdout)["current"] is True, current.output
