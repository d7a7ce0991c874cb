"""Fixtures for real-proof tests: each reference model is compiled once per test session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from zk_helpers import compile_sample

from proofmarket.samples import sample_path
from proofmarket.store import LocalStore
from proofmarket.systems.ezkl.compiler import CompileResult
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate


@pytest.fixture(scope="session")
def zk_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zkhome")


@pytest.fixture(scope="session")
def srs_provider(zk_home: Path) -> SrsProvider:
    return SrsProvider(zk_home / "srs")


@pytest.fixture(scope="session")
def prover(zk_home: Path) -> Iterator[EzklProver]:
    p = EzklProver(LocalStore(zk_home / "store"), zk_home / "jobs")
    yield p
    p.close()


@pytest.fixture(scope="session")
def mlp(prover: EzklProver, srs_provider: SrsProvider) -> CompileResult:
    return compile_sample(prover, srs_provider, "mlp")


@pytest.fixture(scope="session")
def logreg(prover: EzklProver, srs_provider: SrsProvider) -> CompileResult:
    return compile_sample(prover, srs_provider, "logreg", candidates=[Candidate(256, 2, 5, 1)])


@pytest.fixture(scope="session")
def mlp_input() -> dict[str, object]:
    return json.loads(sample_path("mlp", "input").read_text())
