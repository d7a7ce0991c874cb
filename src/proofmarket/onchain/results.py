"""What the market service returns: plain values, amounts in USDC atomic units (6 decimals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proofmarket.chain.client import TxResult
from proofmarket.chain.types import Fulfilment, ModelSpec


@dataclass(frozen=True)
class VerifierDeployment:
    model_id: str
    address: str
    reused: bool
    tx: TxResult | None = None
    shared: bool = False  # a SharedVerifier clone on EZKL's reusable verifier
    gas_used: int = 0  # every transaction it took (a shared one: the VKA registration and the clone, maybe more)


@dataclass(frozen=True)
class Registration:
    model_id: str
    model_key: str
    owner: str
    spec: ModelSpec
    verifier: VerifierDeployment | None  # None when the model was already registered
    action: str  # "registered" | "price updated" | "unchanged"
    tx: TxResult | None = None
    batch_verifiers: dict[int, str] = field(default_factory=dict)  # batch size -> verifier registered by this call


@dataclass(frozen=True)
class RequestReceipt:
    request_id: int
    model_id: str
    commitment: str
    salt: list[int] | None
    deadline: int
    amount: int
    consumer: str
    payment: str
    tx: TxResult
    approve_tx: TxResult | None = None
    contract: str = "InferenceMarket"  # or "AttestationCourt": attested requests wait for a challenge window
    node: str | None = None  # the node named to answer (court requests; None: any staked node)


@dataclass(frozen=True)
class FulfilResult:
    settlement: Fulfilment
    bundle_cid: str
    output: list[list[float]]
    timings: dict[str, float]


@dataclass(frozen=True)
class RefundResult:
    request_id: int
    amount: int
    consumer: str
    tx: TxResult


def settlement_summary(settlement: Fulfilment) -> dict[str, Any]:
    """A settlement as plain JSON values (amounts in atomic USDC units)."""
    s, tx = settlement, settlement.tx
    return {
        "request_id": s.request_id, "status": s.status.name, "prover": s.prover,
        "tx": {"hash": tx.tx_hash, "block": tx.block_number, "gas_used": tx.gas_used},
        "output_hash": "0x" + s.output_hash.hex() if s.output_hash else None,
        "outputs": [hex(v) for v in s.outputs],
        "owner_amount": s.owner_amount, "prover_amount": s.prover_amount, "platform_fee": s.platform_fee,
        "refunded": s.refunded, "slashed": s.slashed,
        **({"callback": "delivered" if s.callback_ok else "failed (retryable)"} if s.callback_ok is not None else {}),
    }


@dataclass(frozen=True)
class Earnings:
    """An address's earnings on the market: ``earned`` (as owner or prover, escrow and x402 splits), ``owed``
    (of it, credited by escrow fulfilments and not withdrawn yet), its USDC balance, x402 money not released yet
    (per splitter), and the platform's balance."""

    address: str
    earned: int
    balance: int
    pending: list[dict[str, Any]]
    platform_balance: int
    owed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "earned": str(self.earned), "owed": str(self.owed),
                "balance": str(self.balance),
                "pending": [{**p, "amount": str(p["amount"])} for p in self.pending],
                "pending_total": str(sum(p["amount"] for p in self.pending)),
                "platform_balance": str(self.platform_balance)}
