"""The SDK's own on-chain check (``Client.check_listing``, the caller's RPC) of a listing on the shared verifier with a
batch verifier: the clone, its implementation, its VKA rendered again from the manifest's vk, the reusable code, and
every registered batch verifier; an owner who registers a batch verifier the manifest does not name is caught."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from x402_helpers import PRICE, Chain, Served, compile_mlp, node_settings

from proofmarket import Client
from proofmarket.api import create_app
from proofmarket.chain.shared import parse_clone
from proofmarket.core.errors import RegistryMismatch
from proofmarket.onchain import Market

pytestmark = [pytest.mark.slow, pytest.mark.chain]


class Listed:
    def __init__(self, served: Served, market: Market, model_id: str) -> None:
        self.served, self.market, self.model_id = served, market, model_id


@pytest.fixture(scope="module")
def listed(node_home: Path, chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listed]:
    settings = node_settings(node_home, tmp_path_factory.mktemp("shared-db") / "node.db", chain.rpc_url,
                             chain.deployment_file)
    market = Market.open(settings)
    model_id = compile_mlp(market.workspace, batch_sizes=(4,), name="sdk-shared").model_id
    registration = market.register_model(model_id, "0.25", 7_000, verifier="shared")
    assert registration.verifier is not None and registration.verifier.shared and registration.batch_verifiers
    app = create_app(settings)
    assert app.state.services.catalog.register(model_id, price_atomic=PRICE).listed
    try:
        with Served(app) as node:
            yield Listed(node, market, model_id)
    finally:
        market.close()


def test_the_sdk_checks_a_shared_listing_and_its_batch_verifiers_on_chain(listed: Listed, chain: Chain,
                                                                        tmp_path: Path) -> None:
    with Client(listed.served.url, cache_dir=tmp_path / "ok") as sdk:
        checked = sdk.check_listing(listed.model_id, chain.rpc_url)
    assert parse_clone(chain.client.code_at(checked["verifier"])) is not None

    # the owner names a batch verifier the manifest has no circuit for (here: a contract that is some other code)
    market = listed.market
    key = market.onchain_id(listed.model_id)
    market.registry.register_batch(key, 2, market.registry.batch_verifier(key, 4).address or "", market.accounts.owner)
    with Client(listed.served.url, cache_dir=tmp_path / "bad") as sdk, pytest.raises(RegistryMismatch) as info:
        sdk.check_listing(listed.model_id, chain.rpc_url)
    assert info.value.details["field"] == "batch_verifier" and info.value.details["size"] == 2
