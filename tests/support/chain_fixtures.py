"""The chain fixtures of the folders that test contracts and the validator against one anvil per folder (imported
by their ``conftest.py``): anvil started once, the market deployed once, and a chain snapshot (evm_snapshot /
evm_revert) around every test so that tests do not see each other's state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chain_helpers import Accounts, Chain, anvil_or_skip

from proofmarket.chain import Devnet, deploy, dev_account


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    anvil = anvil_or_skip()
    with Devnet(tmp_path_factory.mktemp("devnet"), anvil=anvil) as net:
        yield net


@pytest.fixture(scope="session")
def session_chain(devnet: Devnet) -> Chain:
    client = devnet.client()
    accounts = Accounts(*(dev_account(i, client.chain_id) for i in range(7)))
    deployment = deploy(client, accounts.admin, devnet.data_dir / "deployment.json")
    usdc, registry, market = deployment.bind(client)
    return Chain(client, accounts, deployment, usdc, registry, market)


@pytest.fixture
def chain(session_chain: Chain) -> Iterator[Chain]:
    client = session_chain.client
    snapshot = client.rpc("evm_snapshot", [])
    try:
        yield session_chain
    finally:
        client.rpc("evm_revert", [snapshot])
