"""Helpers of the x402 node tests: the sample MLP compiled once, a node served over real HTTP, and
payments crafted by hand (chain.eip3009) for the refusals an honest SDK client never produces."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anvil_binary import anvil_or_skip  # noqa: F401 (re-exported: this folder's tests import it from here)
from compiled import compile_mlp  # noqa: F401 (one compile helper for every world)
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from served import Served as Served  # re-exported: the x402 tests take it from here
from x402.http import decode_payment_required_header, encode_payment_signature_header
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.chain import ChainClient, Devnet, TokenDomain, UsdcToken, deploy, sign_transfer_authorization
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID, dev_account
from proofmarket.core.settings import Settings
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

PRICE = 30_000  # 0.03 USDC per call
MLP_CANDIDATE = Candidate(256, 2, 7, 4)  # one grid point: logrows 9 for the MLP within the accuracy bound
PAY = "PAYMENT-SIGNATURE"




def clear_env() -> None:
    for name in [n for n in os.environ if n.startswith("PROOFMARKET_")]:
        del os.environ[name]


@contextlib.contextmanager
def market_devnet(data: Path) -> Iterator[Chain]:
    """An anvil (its files in ``data``) with the market deployed by dev account 0, for as long as the block runs."""
    with Devnet(data, anvil=anvil_or_skip()) as devnet:
        client = devnet.client()
        path = data / "deployment.json"
        deployment = deploy(client, dev_account(0, client.chain_id), path)
        yield Chain(client, devnet.rpc_url, UsdcToken(client, deployment.usdc), path)


def node_mlp(home: Path, chain: Chain, db_dir: Path) -> str:
    """The sample MLP compiled into the node home ``home`` (a workspace of a node with payments off)."""
    ws = Workspace(node_settings(home, db_dir / "unused.db", chain.rpc_url, chain.deployment_file, payments="off"))
    try:
        return compile_mlp(ws).model_id
    finally:
        ws.close()


def mlp_input() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sample_path("mlp", "input").read_text())
    return doc


def node_settings(home: Path, db: Path, rpc_url: str, deployment_file: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "database_url": f"sqlite:///{db}", "prover_workers": 1,
                              "infer_wait_s": 120.0, "payments": "on", "rpc_url": rpc_url,
                              "deployment_file": deployment_file, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Chain:
    client: ChainClient
    rpc_url: str
    usdc: UsdcToken
    deployment_file: Path

    @property
    def network(self) -> str:
        return f"eip155:{self.client.chain_id}"

    def balances(self, *accounts: str) -> list[int]:
        return [self.usdc.balance_of(a) for a in accounts]


def funded_wallet(chain: Chain, tag: str, usdc: int) -> LocalAccount:
    """A wallet of its own (its key from ``tag``, never one of the node's dev accounts) with ``usdc`` atomic USDC
    minted to it and gas."""
    account: LocalAccount = Account.from_key(keccak(text=tag))
    if usdc:
        chain.usdc.mint(account.address, usdc, dev_account(0, DEVNET_CHAIN_ID))
    chain.client.rpc("anvil_setBalance", [account.address, hex(10**18)])
    return account


def requirements_of(payment_required_header: str, scheme: str = "exact") -> PaymentRequirements:
    """The terms of ``scheme`` in a 402 (a metered call lists upto before exact)."""
    required = decode_payment_required_header(payment_required_header)
    return next(a for a in required.accepts if a.scheme == scheme)  # type: ignore[union-attr]


def signed_payload(account: LocalAccount, requirements: PaymentRequirements, *, value: int | None = None,
                   valid_before: int | None = None) -> str:
    """A PAYMENT-SIGNATURE for ``requirements`` from ``account``, with the value or expiry bent."""
    domain = TokenDomain("USD Coin", "2", DEVNET_CHAIN_ID, requirements.asset)
    auth = sign_transfer_authorization(
        account, domain, to=requirements.pay_to,
        value=int(requirements.amount) if value is None else value, valid_after=0,
        valid_before=int(time.time()) + 600 if valid_before is None else valid_before)
    authorization = {"from": account.address, "to": auth.to, "value": str(auth.value),
                     "validAfter": str(auth.valid_after), "validBefore": str(auth.valid_before),
                     "nonce": "0x" + auth.nonce.hex()}
    inner = {"authorization": authorization, "signature": "0x" + auth.sig.signature.hex()}
    return encode_payment_signature_header(PaymentPayload(x402_version=2, payload=inner, accepted=requirements))
