"""Plain values returned by the contract wrappers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

from proofmarket.chain.client import TxResult

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class ProofMode(IntFlag):
    """ModelRegistry proofMode bits (0 = public input, params fixed in the verifying key)."""

    PUBLIC = 0
    HASHED_INPUT = 1
    HASHED_PARAMS = 2


class RequestStatus(IntEnum):
    NONE = 0
    OPEN = 1
    ACCEPTED = 2
    FULFILLED = 3
    REJECTED = 4
    REFUNDED = 5


@dataclass(frozen=True)
class ModelSpec:
    """What an owner registers. ``price`` in USDC atomic units (6 decimals)."""

    onnx_sha256: bytes
    vk_digest: bytes
    settings_hash: bytes
    verifier: str
    price: int
    owner_share_bps: int
    input_instances: int
    proof_mode: ProofMode = ProofMode.PUBLIC
    params_commitment: int = 0
    metadata_cid: str = ""

    def as_tuple(self) -> tuple[object, ...]:
        return (
            self.onnx_sha256,
            self.vk_digest,
            self.params_commitment,
            self.settings_hash,
            self.verifier,
            self.price,
            self.owner_share_bps,
            self.input_instances,
            int(self.proof_mode),
            self.metadata_cid,
        )

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> ModelSpec:
        onnx, vk, params, settings, verifier, price, share, inputs, mode, cid = t
        return cls(
            bytes(onnx),
            bytes(vk),
            bytes(settings),
            str(verifier),
            int(price),
            int(share),
            int(inputs),
            ProofMode(int(mode)),
            int(params),
            str(cid),
        )


@dataclass(frozen=True)
class RegisteredModel:
    model_key: bytes
    owner: str
    active: bool
    spec: ModelSpec


@dataclass(frozen=True)
class InferenceRequest:
    request_id: int
    consumer: str
    deadline: int
    fee_bps: int
    status: RequestStatus
    prover: str | None
    amount: int
    model_key: bytes
    input_commitment: bytes
    output_hash: bytes | None


@dataclass(frozen=True)
class ProverInfo:
    address: str
    stake: int
    pending_unstake: int
    unlock_at: int
    authorized: bool
    fulfilled: int
    failed: int
    expired: int


@dataclass(frozen=True)
class RequestSubmitted:
    request_id: int
    amount: int
    deadline: int
    tx: TxResult


@dataclass(frozen=True)
class Settlement:
    """The outcome of ``fulfill``: FULFILLED (paid) or REJECTED (consumer refunded, prover slashed)."""

    request_id: int
    status: RequestStatus
    prover: str
    tx: TxResult
    output_hash: bytes | None = None
    outputs: list[int] = field(default_factory=list)
    owner_amount: int = 0
    prover_amount: int = 0
    platform_fee: int = 0
    refunded: int = 0
    slashed: int = 0

    @property
    def valid(self) -> bool:
        return self.status is RequestStatus.FULFILLED
