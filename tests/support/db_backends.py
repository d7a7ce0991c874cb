"""Fixtures: a fresh, migrated database on each backend (PostgreSQL missing: skipped locally, failed in CI)."""

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
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str | None) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'node.db'}"
    elif pg_url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is needed in CI (initdb/pg_ctl + psycopg, or TEST_POSTGRES_URL)")
        pytest.skip("no PostgreSQL here (initdb/pg_ctl + psycopg, or TEST_POSTGRES_URL)")
    else:
        url = fresh_database(pg_url)
    database = Database(url)
    database.migrate()
    yield database
    database.close()
