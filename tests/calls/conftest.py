"""Job tests: fast ones on fakes and a fresh SQLite database each; slow ones on the compiled sample MLP."""

from __future__ import annotations

import json
from pathlib import Path

import db_backends
import pytest
from jobs_helpers import clear_env

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


# a new database (migrated: db) on SQLite and on PostgreSQL
db, empty_db_url, pg_url = db_backends.db, db_backends.empty_db_url, db_backends.pg_url
