"""A paid devnet node served over HTTP for the channel and credits tests (``tests/payments/batch``,
``tests/payments/credits``): one admin token, the sample model listed by dev account ``OWNER_INDEX``; and the
credits tests' steps (a funded wallet, a key made by its signature, credits bought with one x402 payment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from x402 import x402ClientSync
from x402.http.clients import x402_requests
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402_helpers import Chain, Served, funded_wallet, node_settings

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.address_signature import body_purpose, sign_headers

ADMIN = "channels-admin-token-0123456789"
OWNER_INDEX = 5


def serve_node(home: Path, db: Path, chain: Chain, mlp_id: str, price: int, **overrides: object) -> Served:
    """A paid node on ``db`` (or ``database_url``), signing with an account of its own: one per book, as in
    production. The session's nodes share one devnet, and a book's chain tail holds the node's payouts while its
    account sent token transfers the book does not hold: on the shared dev node account, whichever other node paid
    out before this one (a matter of test order) held this one's payouts. Two nodes on one database (one book)
    share their account."""
    settings = node_settings(home, db, chain.rpc_url, chain.deployment_file, admin_token=ADMIN,
                             registry_terms="off", **overrides)
    own = Account.from_key(keccak(text=f"paid-node:{overrides.get('database_url') or db}"))
    chain.client.rpc("anvil_setBalance", [own.address, hex(10 ** 20)])  # gas for its payouts and claims
    with pytest.MonkeyPatch.context() as env:  # read when the node is built
        env.setenv("PROOFMARKET_NODE_KEY", own.key.hex())
        app = create_app(settings)
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID).address
    app.state.services.catalog.register(mlp_id, price_atomic=price, owner=owner)
    return Served(app)


def fresh(chain: Chain, tag: str) -> LocalAccount:
    return funded_wallet(chain, f"credits-{tag}", 3_000_000)  # a thousand calls at 3,000


def node_signer(node: Served) -> str:
    return str(requests.get(f"{node.url}/.well-known/ai-service.json", timeout=30).json()["address_signature"]["node"])


def new_key(node: Served, wallet: LocalAccount, **body: Any) -> dict[str, Any]:
    headers = sign_headers(wallet, node_signer(node), body_purpose(body))
    answer = requests.post(f"{node.url}/v1/keys", json=body, headers=headers, timeout=30)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def buy(node: Served, chain: Chain, wallet: LocalAccount, amount: int) -> dict[str, Any]:
    client = x402ClientSync()
    register_exact_evm_client(client, EthAccountSigner(wallet), networks=chain.network)
    client.set_spend_controls({"allowed_assets": [{"network": chain.network, "asset": chain.usdc.address}]})
    answer = x402_requests(client).post(f"{node.url}/v1/credits/buy", params={"amount": amount}, timeout=120)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())
