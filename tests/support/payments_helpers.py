"""Shared helpers of the payment tests: the devnet market, and payments crafted by hand (chain.eip3009)
for the refusals an honest SDK client never produces."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from anvil_binary import anvil_or_skip  # noqa: F401 (re-exported: this folder's tests import it from here)
from eth_account.signers.local import LocalAccount
from x402.http import encode_payment_signature_header
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.chain import ChainClient, Devnet, TokenDomain, UsdcToken, sign_transfer_authorization
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.payments.exact.accepted import InMemoryNonceLedger, NonceLedger
from proofmarket.payments.exact.gate import PaymentGate

PRICE = 250_000  # 0.25 USDC
FACILITATOR_KEY_INDEX = 9  # a key nothing else in the tests sends from




@dataclass
class Market:
    devnet: Devnet
    client: ChainClient
    usdc: UsdcToken
    payee: LocalAccount
    payer: LocalAccount
    other: LocalAccount
    facilitator: LocalAccount

    @property
    def network(self) -> str:
        return f"eip155:{self.client.chain_id}"

    def gate(self, ledger: NonceLedger | None = None, **options: object) -> PaymentGate:
        """A node's gate with an in-process facilitator; a fresh ledger unless one is given."""
        return PaymentGate.local(
            rpc_url=self.devnet.rpc_url,
            signer=self.facilitator,
            asset=self.usdc.address,
            chain=self.client,
            ledger=ledger if ledger is not None else InMemoryNonceLedger(),
            **options,
        )


def signed_payload(
    account: LocalAccount,
    requirements: PaymentRequirements,
    *,
    value: int | None = None,
    to: str | None = None,
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: bytes | None = None,
    signer: LocalAccount | None = None,
) -> PaymentPayload:
    """An exact/EIP-3009 payload from ``account`` for ``requirements``; any field can be bent.

    ``signer`` signs the authorization instead of ``account`` (a forged signature)."""
    domain = TokenDomain("USD Coin", "2", DEVNET_CHAIN_ID, requirements.asset)
    auth = sign_transfer_authorization(
        signer or account,
        domain,
        to=to or requirements.pay_to,
        value=int(requirements.amount) if value is None else value,
        valid_after=valid_after,
        valid_before=int(time.time()) + 600 if valid_before is None else valid_before,
        nonce=nonce,
    )
    authorization = {
        "from": account.address,
        "to": auth.to,
        "value": str(auth.value),
        "validAfter": str(auth.valid_after),
        "validBefore": str(auth.valid_before),
        "nonce": "0x" + auth.nonce.hex(),
    }
    inner = {"authorization": authorization, "signature": "0x" + auth.sig.signature.hex()}
    return PaymentPayload(x402_version=2, payload=inner, accepted=requirements)


def header(payload: PaymentPayload) -> str:
    return encode_payment_signature_header(payload)


def edit_header(value: str, edit: Any) -> str:
    """Decode a PAYMENT-SIGNATURE value, let ``edit(dict)`` change it, re-encode."""
    data = json.loads(base64.b64decode(value))
    edit(data)
    return base64.b64encode(json.dumps(data).encode()).decode()
