"""Real-proof market fixtures: the sample MLP compiled once per session (public, private-input, and a
second public circuit), one anvil started here with the market deployed and the models listed, and a
chain snapshot (evm_snapshot / evm_revert) around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from market_helpers import (
    HASHED_MLP_CANDIDATE,
    MLP_CANDIDATE,
    OTHER_MLP_CANDIDATE,
    OWNER_SHARE_BPS,
    PRICE,
    SALT,
    Listed,
    Proofs,
    anvil_or_skip,
    compile_mlp,
    mlp_input,
    other_mlp_input,
)

from proofmarket.chain import Devnet
from proofmarket.core.settings import Settings
from proofmarket.onchain import Market
from proofmarket.systems.workspace import Workspace


@pytest.fixture(scope="session")
def market_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    ws = Workspace(Settings(home=tmp_path_factory.mktemp("markethome")))
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def models(market_workspace: Workspace) -> Listed:
    return Listed(
        public=compile_mlp(market_workspace, "public", MLP_CANDIDATE).model_id,
        hashed=compile_mlp(market_workspace, "private-input", HASHED_MLP_CANDIDATE).model_id,
        other=compile_mlp(market_workspace, "public", OTHER_MLP_CANDIDATE).model_id,
    )


@pytest.fixture(scope="session")
def proofs(market_workspace: Workspace, models: Listed) -> Proofs:
    prove = market_workspace.prover.prove
    return Proofs(
        mlp=prove(models.public, mlp_input()).bundle,
        other_input=prove(models.public, other_mlp_input()).bundle,
        other_model=prove(models.other, mlp_input()).bundle,
        hashed=prove(models.hashed, mlp_input(), salt=SALT).bundle,
    )


@pytest.fixture(scope="session")
def market_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    anvil = anvil_or_skip()
    with Devnet(tmp_path_factory.mktemp("marketdevnet"), anvil=anvil) as net:
        yield net


@pytest.fixture(scope="session")
def session_market(market_workspace: Workspace, market_devnet: Devnet, models: Listed) -> Market:
    """The market deployed (dev prover authorised and staked) with the three models listed."""
    market = Market.deploy(workspace=market_workspace, client=market_devnet.client())
    for model_id in (models.public, models.hashed, models.other):
        market.register_model(model_id, PRICE, OWNER_SHARE_BPS)
    return market


@pytest.fixture
def market(session_market: Market) -> Iterator[Market]:
    client = session_market.client
    snapshot = client.rpc("evm_snapshot", [])
    try:
        yield session_market
    finally:
        client.rpc("evm_revert", [snapshot])


@pytest.fixture(scope="session")
def private_model(market_workspace: Workspace) -> str:
    """The MLP with hashed input and hashed weights (logrows 14: the slowest compile of the suite)."""
    return compile_mlp(market_workspace, "private", HASHED_MLP_CANDIDATE).model_id
