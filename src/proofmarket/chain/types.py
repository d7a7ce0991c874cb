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
class CallbackTerms:
    """A request's callback to its consumer contract (``requestInferenceWithCallback``): the gas it is called with
    (0: no callback), the prover's tip for that gas, and whether a failed callback is owed (``retryCallback``)."""

    gas: int
    tip: int
    owed: bool


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
    instance_count: int
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
            self.instance_count,
            int(self.proof_mode),
            self.metadata_cid,
        )

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> ModelSpec:
        onnx, vk, params, settings, verifier, price, share, inputs, count, mode, cid = t
        return cls(
            bytes(onnx),
            bytes(vk),
            bytes(settings),
            str(verifier),
            int(price),
            int(share),
            int(inputs),
            int(count),
            ProofMode(int(mode)),
            int(params),
            str(cid),
        )


@dataclass(frozen=True)
class RegisteredModel:
    """A registry entry. ``model_id`` is the on-chain id, modelIdOf(owner, key); ``key`` is keccak(CID)."""

    model_id: bytes
    owner: str
    active: bool
    spec: ModelSpec
    key: bytes = bytes(32)
    verifier_codehash: bytes = bytes(32)

    @property
    def model_key(self) -> bytes:  # the on-chain id (older name)
        return self.model_id


@dataclass(frozen=True)
class RequestTerms:
    """The model's terms a request snapshotted when it was made."""

    owner: str
    verifier: str
    owner_share_bps: int
    input_instances: int
    instance_count: int
    params_commitment: int
    created_at: int = 0  # when the request was made (a batch verifier registered later never settles it)


@dataclass(frozen=True)
class BatchVerifier:
    """A model's verifier of its batch circuit of ``size`` calls on the registry (``address`` None: none)."""

    size: int
    address: str | None
    registered_at: int
    codehash: bytes


@dataclass(frozen=True)
class InferenceRequest:
    request_id: int
    consumer: str
    deadline: int
    fee_bps: int
    status: RequestStatus
    prover: str | None
    amount: int
    model_key: bytes  # the on-chain model id
    input_commitment: bytes
    output_hash: bytes | None
    slash_bps: int = 0
    claim_expiry: int = 0
    bond: int = 0
    terms: RequestTerms | None = None


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
class MarketParams:
    """InferenceMarket's admin parameters (bounded on chain; changed with scheduleParams + applyParams)."""

    platform_fee_bps: int
    slash_bps: int
    unstake_delay: int
    claim_window: int
    min_stake: int
    claim_bond: int

    def as_tuple(self) -> tuple[int, ...]:
        return (self.platform_fee_bps, self.slash_bps, self.unstake_delay, self.claim_window, self.min_stake,
                self.claim_bond)

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> MarketParams:
        return cls(*(int(v) for v in t))


@dataclass(frozen=True)
class Payout:
    """What one ``withdrawMany`` paid: account -> atomic USDC (accounts owed nothing are absent); ``skipped``: the
    accounts the token refused to pay (blocklisted), with what stays owed to them."""

    paid: dict[str, int]
    tx: TxResult
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.paid.values())


@dataclass(frozen=True)
class SplitRelease:
    """What ``releaseSplit`` paid out of a (model, prover) splitter; ``skipped``: payees the token refused to pay
    (blocklisted), whose share stays owed to them (``withdraw`` pays it once the token takes it)."""

    model_id: bytes
    prover: str
    owner: str
    owner_amount: int
    prover_amount: int
    platform_fee: int
    tx: TxResult
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.owner_amount + self.prover_amount + self.platform_fee


@dataclass(frozen=True)
class RequestSubmitted:
    request_id: int
    amount: int
    deadline: int
    tx: TxResult


@dataclass(frozen=True)
class Fulfilment:
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
    callback_ok: bool | None = None  # a consumer contract's callback: whether it returned (None: no callback)

    @property
    def valid(self) -> bool:
        return self.status is RequestStatus.FULFILLED
