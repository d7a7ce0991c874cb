"""Payment fixtures: one anvil for the session (started here) with TestUSDC deployed, a fresh gate per test; and
for the channel and credits tests (``batch/``, ``credits/``) one more anvil with the market deployed (the channel
contract and Multicall3 installed at the SDK's addresses by the node) and the sample MLP compiled once.

No chain snapshots here: reverting would rewind the nonce of the facilitator's key under the SDK
signer's own nonce counter. Tests assert balance deltas instead, on accounts minted 100k USDC each.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from payments_helpers import FACILITATOR_KEY_INDEX, Market, anvil_or_skip
from x402_helpers import Chain, clear_env, market_devnet, node_mlp

from proofmarket.chain import Devnet, UsdcToken, deploy, dev_account
from proofmarket.payments.exact.gate import PaymentGate


@pytest.fixture(scope="session")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    anvil = anvil_or_skip()
    data = tmp_path_factory.mktemp("payments-devnet")
    with Devnet(data, anvil=anvil) as devnet:
        client = devnet.client()
        chain_id = client.chain_id
        deployment = deploy(client, dev_account(0, chain_id), data / "deployment.json")
        yield Market(
            devnet,
            client,
            UsdcToken(client, deployment.usdc),
            payee=dev_account(1, chain_id),
            payer=dev_account(2, chain_id),
            other=dev_account(3, chain_id),
            facilitator=dev_account(FACILITATOR_KEY_INDEX, chain_id),
        )


@pytest.fixture
def gate(market: Market) -> PaymentGate:
    return market.gate()


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """The channel and credits tests' chain (``exact/`` has its own)."""
    clear_env()
    with market_devnet(tmp_path_factory.mktemp("channels-devnet")) as chain:
        yield chain


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("channels-home")


@pytest.fixture(scope="session")
def mlp_id(home: Path, chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> str:
    return node_mlp(home, chain, tmp_path_factory.mktemp("db"))
