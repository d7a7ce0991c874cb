"""Fixtures for the API tests: apps on a fresh SQLite database each, and the sample MLP compiled once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import HASHED_MLP_CANDIDATE, AppFactory, clear_env, compile_mlp, node_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient

from proofmarket.api import Rail, create_app
from proofmarket.node.services import NodeServices
from proofmarket.systems.workspace import Workspace


@pytest.fixture(scope="session", autouse=True)
def _clean_env() -> None:
    clear_env()


@pytest.fixture(scope="session")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nodehome")


@pytest.fixture(scope="session")
def mlp_id(node_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    ws = Workspace(node_settings(node_home, tmp_path_factory.mktemp("db") / "unused.db"))
    try:
        return compile_mlp(ws).model_id
    finally:
        ws.close()


@pytest.fixture(scope="session")
def private_mlp_id(node_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample MLP compiled with the ``private`` profile (hashed input and weights)."""
    ws = Workspace(node_settings(node_home, tmp_path_factory.mktemp("db") / "unused.db"))
    try:
        return compile_mlp(ws, "private", HASHED_MLP_CANDIDATE).model_id
    finally:
        ws.close()


@pytest.fixture
def make_app(node_home: Path, tmp_path: Path) -> Iterator[AppFactory]:
    """Build apps on this test's database (tmp_path/node.db) and the shared store; closed at teardown."""
    built: list[NodeServices] = []

    def make(gate: Rail | None = None, **overrides: Any) -> FastAPI:
        app = create_app(node_settings(node_home, tmp_path / "node.db", **overrides), payments=gate)
        built.append(app.state.services)
        return app

    yield make
    for services in built:
        services.close()


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    """A node serving no model (no compile needed): for everything that fails before a proof."""
    with TestClient(make_app()) as c:
        yield c


@pytest.fixture(scope="module")
def mlp_app(node_home: Path, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One node per test module serving the compiled MLP (its prover process stays warm)."""
    app = create_app(node_settings(node_home, tmp_path_factory.mktemp("mlpdb") / "node.db"))
    app.state.services.catalog.register(mlp_id, price_atomic=10_000)
    yield app
    app.state.services.close()


@pytest.fixture(scope="module")
def mlp_client(mlp_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(mlp_app) as c:
        yield c
