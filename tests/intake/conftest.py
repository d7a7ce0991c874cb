"""Escrow watcher fixtures: the sample MLP compiled once (public and hashed input), one anvil with the
market deployed and both models listed, and node apps on a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from escrow_helpers import (
    HASHED_MLP_CANDIDATE,
    MLP_CANDIDATE,
    OWNER_SHARE_BPS,
    PRICE,
    AppFactory,
    EscrowEnv,
    anvil_or_skip,
    compile_mlp,
    node_settings,
)
from fastapi import FastAPI

from proofmarket.api import create_app
from proofmarket.chain import Devnet
from proofmarket.node.services import NodeServices
from proofmarket.onchain import Market
from proofmarket.systems.workspace import Workspace


@pytest.fixture(scope="session")
def escrow_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    anvil = anvil_or_skip()
    with Devnet(tmp_path_factory.mktemp("escrowdevnet"), anvil=anvil) as net:
        yield net


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory, escrow_devnet: Devnet) -> Iterator[EscrowEnv]:
    home = tmp_path_factory.mktemp("escrowhome")
    ws = Workspace(node_settings(home, escrow_devnet.rpc_url))
    try:
        public = compile_mlp(ws, "public", MLP_CANDIDATE).model_id
        hashed = compile_mlp(ws, "private-input", HASHED_MLP_CANDIDATE).model_id
        market = Market.deploy(workspace=ws)
        for model_id in (public, hashed):
            market.register_model(model_id, PRICE, OWNER_SHARE_BPS)
        yield EscrowEnv(home, escrow_devnet.rpc_url, ws, market, public, hashed)
    finally:
        ws.close()


@pytest.fixture
def make_app(env: EscrowEnv, tmp_path: Path) -> Iterator[AppFactory]:
    """Node apps on this test's database serving both models (the shared workspace: its prover is warm)."""
    built: list[NodeServices] = []

    def make(**overrides: Any) -> FastAPI:
        settings = node_settings(env.home, env.rpc_url, tmp_path / "node.db", **overrides)
        app = create_app(settings, workspace=env.ws)
        for model_id in (env.public, env.hashed):
            app.state.services.catalog.register(model_id, price_atomic=2_500_000)
        built.append(app.state.services)
        return app

    yield make
    for services in built:
        services.close()
