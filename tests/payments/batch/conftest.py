"""batch-settlement fixtures: one anvil with the market deployed (the channel contract and Multicall3 installed at
the SDK's addresses by the node), the sample MLP compiled once, a paid node served over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from x402_helpers import Chain, Served, anvil_or_skip, clear_env, compile_mlp, node_settings  # noqa: E402

from proofmarket.api import create_app  # noqa: E402
from proofmarket.chain import Devnet, UsdcToken, deploy, dev_account  # noqa: E402
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID  # noqa: E402
from proofmarket.systems.workspace import Workspace  # noqa: E402

ADMIN = "channels-admin-token-0123456789"
OWNER_INDEX = 5


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    clear_env()
    anvil = anvil_or_skip()
    data = tmp_path_factory.mktemp("channels-devnet")
    with Devnet(data, anvil=anvil) as devnet:
        client = devnet.client()
        path = data / "deployment.json"
        deployment = deploy(client, dev_account(0, client.chain_id), path)
        yield Chain(client, devnet.rpc_url, UsdcToken(client, deployment.usdc), path)


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("channels-home")


@pytest.fixture(scope="session")
def mlp_id(home: Path, chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> str:
    settings = node_settings(home, tmp_path_factory.mktemp("db") / "unused.db", chain.rpc_url, chain.deployment_file,
                             payments="off")
    ws = Workspace(settings)
    try:
        return compile_mlp(ws)
    finally:
        ws.close()


def serve_node(home: Path, db: Path, chain: Chain, mlp_id: str, price: int, **overrides: object) -> Served:
    settings = node_settings(home, db, chain.rpc_url, chain.deployment_file, admin_token=ADMIN,
                             registry_terms="off", **overrides)
    app = create_app(settings)
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    app.state.services.catalog.register(mlp_id, price_atomic=price, owner=owner)
    return Served(app)
