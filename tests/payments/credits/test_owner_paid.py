"""An owner-listed model's owner is paid on the credits rail as on exact, without a transaction of its own (issue 82).

The model is listed on the registry by its owner (dev account ``OWNER_INDEX``, not the node's default owner) at a
70 % owner share; calls drawn from credits owe its revenue splitter in the book; the node's payout pays the splitter
and releases it. Before, the release looked the listing up under the node's default owner, found none, and the
money stayed in the splitter until the owner sent ``releaseSplit`` itself. The owner's USDC balance (not the book)
is what is checked, and the earnings view names the payout cadence."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from paid_node import ADMIN, OWNER_INDEX, buy, fresh, new_key, node_signer
from x402_helpers import Chain, Served, mlp_input, node_settings

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.address_signature import sign_headers
from proofmarket.onchain import Market

PRICE_USDC, PRICE = "0.004", 4_000
OWNER_SHARE_BPS = 7_000
CALLS = 3


@pytest.fixture(scope="module")
def listed_node(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = node_settings(home, tmp_path_factory.mktemp("owner-paid-db") / "node.db", chain.rpc_url,
                             chain.deployment_file, admin_token=ADMIN, registry_terms="on")
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID)
    market = Market.open(settings)
    try:
        assert market.accounts.owner.address != owner.address  # an owner-listed model, not the node's own
        market.with_accounts(owner=owner).register_model(mlp_id, PRICE_USDC, OWNER_SHARE_BPS)
    finally:
        market.close()
    app = create_app(settings)
    served = app.state.services.catalog.register(mlp_id, price_atomic=1_000, owner=owner.address)
    assert served.listed and served.price_atomic == PRICE  # the registry's terms, paid to its splitter
    with Served(app) as node:
        yield node


def test_credits_revenue_reaches_the_owners_wallet_without_its_transaction(listed_node: Served, chain: Chain,
                                                                          mlp_id: str) -> None:
    node = listed_node
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID)
    wallet = fresh(chain, "owner-paid")
    buy(node, chain, wallet, CALLS * PRICE)
    key = new_key(node, wallet)["key"]
    for _ in range(CALLS):
        answer = requests.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=120,
                               headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.text
    before = chain.balances(owner.address)[0]
    earnings = requests.get(f"{node.url}/v1/earnings", params={"address": owner.address}, timeout=30,
                            headers=sign_headers(owner, node_signer(node), "earnings")).json()
    assert earnings["book"]["owed"] == str(CALLS * PRICE) and earnings["book"]["payout_every_s"] == 3600.0
    assert earnings["book"]["next_payout_at"]  # when the owner's share leaves the node

    run = requests.post(f"{node.url}/v1/payouts/run", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
    assert run.status_code == 200 and run.json()["payouts"]["paid"], run.text
    share = CALLS * PRICE * OWNER_SHARE_BPS // 10_000
    deadline = time.monotonic() + 60  # the release is queued right after the payout (then at most every 30 s)
    while chain.balances(owner.address)[0] - before < share and time.monotonic() < deadline:
        time.sleep(0.5)
    assert chain.balances(owner.address)[0] - before == share  # in the owner's wallet; it sent nothing

    again = requests.post(f"{node.url}/v1/payouts/run", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
    assert again.json()["payouts"]["paid"] == {}  # nothing owed, nothing sent

