"""A batch-settlement rail on a real database with a facilitator test double (unit tests only: the chain's side is
tested against anvil in test_batch_settlement_node.py). Payloads come from the x402 SDK's own client."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from x402.http import decode_payment_response_header, encode_payment_signature_header
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme as ClientScheme
from x402.mechanisms.evm.batch_settlement.types import is_deposit_payload
from x402.schemas import (
    PaymentPayload,
    PaymentRequirements,
    PaymentResponseContext,
    SettleResponse,
    VerifyResponse,
)

from proofmarket.chain.devkeys import DEVNET_CHAIN_ID, dev_account
from proofmarket.core.errors import PaymentError
from proofmarket.db import Database
from proofmarket.payments.batch.rail import BatchSettlementRail, ChannelTerms
from proofmarket.payments.batch.repo import ChannelRepo
from proofmarket.payments.batch.store import DbChannelStorage
from proofmarket.payments.port import Offer
from proofmarket.payments.tickets import ProofOutcome
from proofmarket.store.local import LocalStore

NETWORK = f"eip155:{DEVNET_CHAIN_ID}"
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PRICE = 1_000
RESOURCE = "http://node.test/v1/models/m1/infer"
NODE = dev_account(1, DEVNET_CHAIN_ID)


@dataclass
class FakeFacilitator:
    """Answers like the SDK's facilitator for a channel with ``balance`` (deposits add to it)."""

    balance: int = 0
    claimed: int = 0
    verified: int = 0
    settled: list[dict[str, Any]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {"balance": str(self.balance), "totalClaimed": str(self.claimed), "withdrawRequestedAt": 0,
                "refundNonce": "0"}

    def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResponse:
        self.verified += 1
        return VerifyResponse(is_valid=True, payer=payload.payload["channelConfig"]["payer"],
                              extra={"channelId": payload.payload["voucher"]["channelId"], **self.state()})

    def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResponse:
        raw = payload.payload
        self.settled.append(raw)
        if is_deposit_payload(raw):
            self.balance += int(raw["deposit"]["amount"])
        return SettleResponse(success=True, transaction="0x" + "ab" * 32, network=NETWORK, amount="0",
                              payer=raw.get("channelConfig", {}).get("payer"), extra={"channelState": self.state()})


def make_rail(db: Database, tmp: Path, facilitator: FakeFacilitator, *,
              max_timeout_s: int = 900) -> BatchSettlementRail:
    terms = ChannelTerms(network=NETWORK, asset=USDC, token_name="USD Coin", token_version="2",
                         receiver=NODE.address, withdraw_delay_s=3600, max_timeout_s=max_timeout_s)

    def with_terms(err: PaymentError, offer: Offer, requirements: PaymentRequirements) -> PaymentError:
        err.headers = {"X-Test-Terms": requirements.model_dump_json(by_alias=True)}
        return err

    return BatchSettlementRail(terms, DbChannelStorage(ChannelRepo(db)), facilitator,  # type: ignore[arg-type]
                               NODE, LocalStore(tmp / "store"), lambda offer: "0x" + "11" * 20, with_terms)


def offer(price: int = PRICE, per_1k_tokens: int | None = None) -> Offer:
    return Offer(model_id="m1", model_name="m1", price_atomic=price, resource=RESOURCE, per_1k_tokens=per_1k_tokens)


def outcome(job_id: str = "job-1", tokens: int | None = None) -> ProofOutcome:
    bundle: dict[str, Any] = {"model": {"id": "m1"}, "input": {"commitment": "0x" + "01" * 32},
                              "output": {"hash": "0x" + "02" * 32}}
    if tokens is not None:
        bundle["output"]["tokens"] = list(range(tokens))
    return ProofOutcome(job_id, "m1", "bafy" + hashlib.sha256(job_id.encode()).hexdigest()[:20],
                        "0x" + "01" * 32, "0x" + "02" * 32, bundle)


class Payer:
    """The SDK's batch-settlement client for one payer, and the header it sends."""

    def __init__(self, account: LocalAccount, deposit_calls: int = 10) -> None:
        from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy

        self.account = account
        self.scheme = ClientScheme(account, BatchSettlementDepositPolicy(deposit_multiplier=deposit_calls))

    def pay(self, requirements: PaymentRequirements) -> tuple[str, PaymentPayload]:
        inner = self.scheme.create_payment_payload(requirements)
        payload = PaymentPayload(x402_version=2, accepted=requirements, payload=inner,
                                 resource={"url": RESOURCE, "description": "", "mimeType": "application/json"})
        return encode_payment_signature_header(payload), payload

    def answered(self, payload: PaymentPayload, requirements: PaymentRequirements, header: str) -> None:
        """The SDK client reads the node's PAYMENT-RESPONSE (its next voucher builds on the charged total)."""
        self.scheme.scheme_hooks.on_payment_response(PaymentResponseContext(
            payment_payload=payload, requirements=requirements, settle_response=decode_payment_response_header(header)))
