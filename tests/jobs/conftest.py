"""Job tests: fast ones on fakes and a fresh SQLite database each; slow ones on the compiled sample MLP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_helpers import clear_env
from pg_server import fresh_database, postgres_server

from proofmarket.core.settings import Settings
from proofmarket.db import Database
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace


@pytest.fixture(scope="session", autouse=True)
def _clean_env() -> None:
    clear_env()


@pytest.fixture(scope="session")
def mlp_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home whose store holds the sample MLP, compiled once (one grid point)."""
    home = tmp_path_factory.mktemp("jobshome")
    ws = Workspace(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    try:
        samples = json.loads(sample_path("mlp", "samples").read_text())
        options = CompileOptions(profile=PrivacyProfile.parse("public"), srs=SrsProvider(ws.settings.srs_dir),
                                 candidates=[Candidate(256, 2, 7, 4)])
        return home, ws.prover.compile(sample_path("mlp"), samples, options).model_id
    finally:
        ws.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str | None) -> Iterator[Database]:
    """A fresh, migrated database on each backend. PostgreSQL missing: skipped locally, failed in CI."""
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
