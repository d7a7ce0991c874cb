"""Values that cross the gate: a verified (not yet settled) payment and its settlement.

Both serialise to plain JSON (``to_json`` / ``from_json``) so that a job can store the payment it
was started with and settle it later, possibly in another process after a restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from x402.schemas import PaymentPayload, PaymentRequirements


def payment_key(network: str, asset: str, payer: str, nonce: str) -> str:
    """The identity of an EIP-3009 authorization: one (token, authorizer, nonce) transfers at most once."""
    return ":".join((network, asset.lower(), payer.lower(), nonce.lower()))


@dataclass(frozen=True)
class VerifiedPayment:
    """A payment the facilitator found valid and this node reserved; not yet settled."""

    payload: PaymentPayload
    requirements: PaymentRequirements
    payer: str
    nonce: str  # 0x-prefixed 32-byte hex
    valid_after: int
    valid_before: int

    @property
    def key(self) -> str:
        return payment_key(self.network, self.asset, self.payer, self.nonce)

    @property
    def amount(self) -> int:
        return int(self.requirements.amount)

    @property
    def network(self) -> str:
        return str(self.requirements.network)

    @property
    def asset(self) -> str:
        return self.requirements.asset

    @property
    def pay_to(self) -> str:
        return self.requirements.pay_to

    def seconds_left(self, now: float | None = None) -> int:
        """Seconds until the authorization expires: settle before then or the payment is lost."""
        return self.valid_before - int(time.time() if now is None else now)

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": self.payload.model_dump(mode="json", by_alias=True, exclude_none=True),
            "requirements": self.requirements.model_dump(mode="json", by_alias=True, exclude_none=True),
            "payer": self.payer,
            "nonce": self.nonce,
            "validAfter": self.valid_after,
            "validBefore": self.valid_before,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifiedPayment:
        return cls(
            payload=PaymentPayload.model_validate(data["payload"]),
            requirements=PaymentRequirements.model_validate(data["requirements"]),
            payer=str(data["payer"]),
            nonce=str(data["nonce"]),
            valid_after=int(data["validAfter"]),
            valid_before=int(data["validBefore"]),
        )


@dataclass(frozen=True)
class PaidOnChain:
    """A payment moved on chain: ``amount`` atomic units of the asset from ``payer`` in ``tx_hash``."""

    tx_hash: str
    payer: str
    amount: int
    network: str

    def to_json(self) -> dict[str, Any]:
        return {"txHash": self.tx_hash, "payer": self.payer, "amount": str(self.amount), "network": self.network}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaidOnChain:
        return cls(str(data["txHash"]), str(data["payer"]), int(data["amount"]), str(data["network"]))
