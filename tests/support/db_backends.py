"""Fixtures: a new database on each backend, empty or migrated (PostgreSQL missing: skipped locally, failed in CI).

A module or ``conftest.py`` that uses ``db`` names ``empty_db_url`` and ``pg_url`` too (the fixtures it needs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import fresh_database, postgres_server

from proofmarket.db import Database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str | None) -> str:
    """A new database's URL on each backend, nothing migrated (a migration's test starts from it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    if pg_url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is needed in CI (initdb/pg_ctl + psycopg, or TEST_POSTGRES_URL)")
        pytest.skip("no PostgreSQL here (initdb/pg_ctl + psycopg, or TEST_POSTGRES_URL)")
    return fresh_database(pg_url)


@pytest.fixture
def db(empty_db_url: str) -> Iterator[Database]:
    database = Database(empty_db_url)
    database.migrate()
    yield database
    database.close()
