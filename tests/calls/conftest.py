"""Job tests: fast ones on fakes and a fresh SQLite database each; slow ones on the compiled sample MLP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import db_backends
import pytest
from jobs_helpers import clear_env

from proofmarket.calls.redis_server import RedisServer, redis_server
from proofmarket.core.settings import Settings
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


@pytest.fixture(scope="module")
def live_redis() -> Iterator[RedisServer]:
    """A throwaway redis-server for the module: skipped where none is installed, a failure in CI (.ci/run installs
    it)."""
    with redis_server() as server:
        if server is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is needed in CI (.ci/run installs it)")
            pytest.skip("redis-server is not installed")
        yield server


# a new database (migrated: db) on SQLite and on PostgreSQL
db, empty_db_url, pg_url = db_backends.db, db_backends.empty_db_url, db_backends.pg_url
