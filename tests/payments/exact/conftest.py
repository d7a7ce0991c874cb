"""x402 node fixtures: one anvil with the market deployed, the sample MLP compiled once, and one paid node
(payments on, in-process facilitator) served over HTTP for the session.

No chain snapshots (the facilitator's nonce counter would go stale): tests assert balance deltas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from x402_helpers import PRICE, Chain, Served, clear_env, market_devnet, node_mlp, node_settings

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID

PAYER_INDEX, PAYEE_INDEX, SDK_PAYER_INDEX = 2, 5, 6


@pytest.fixture(scope="session", autouse=True)
def _clean_env() -> None:
    clear_env()


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with market_devnet(tmp_path_factory.mktemp("x402-devnet")) as chain:
        yield chain


@pytest.fixture(scope="session")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("x402-home")


@pytest.fixture(scope="session")
def mlp_id(node_home: Path, chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> str:
    return node_mlp(node_home, chain, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session")
def payer() -> LocalAccount:
    return dev_account(PAYER_INDEX, DEVNET_CHAIN_ID)


@pytest.fixture(scope="session")
def sdk_payer() -> LocalAccount:
    return dev_account(SDK_PAYER_INDEX, DEVNET_CHAIN_ID)


@pytest.fixture(scope="session")
def payee() -> LocalAccount:
    """The model's owner: calls are paid to it."""
    return dev_account(PAYEE_INDEX, DEVNET_CHAIN_ID)


@pytest.fixture(scope="session")
def node(node_home: Path, mlp_id: str, chain: Chain, payee: LocalAccount,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    app = create_app(node_settings(node_home, tmp_path_factory.mktemp("x402-db") / "node.db", chain.rpc_url,
                                   chain.deployment_file))
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
    with Served(app) as served:
        yield served
