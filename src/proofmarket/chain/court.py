"""Wrapper over ``contracts/AttestationCourt.sol``: attested escrow with a challenge window, staked nodes and
validators, bonded challenges, votes to a quorum and slashing (see the contract's notice), and over
``contracts/CourtValidator.sol`` (ERC-8004 validations answered from the court's verdicts)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from proofmarket.chain.client import TxResult
from proofmarket.chain.contracts import BoundContract

STATUS = ("none", "open", "committed", "challenged", "paid", "slashed", "refunded")
SETTLED = ("paid", "slashed", "refunded")
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class CourtParams:
    window: int
    vote_window: int
    quorum: int
    sample_bps: int
    slash_bps: int
    challenger_reward_bps: int
    platform_fee_bps: int
    challenge_bond: int
    node_min_stake: int
    validator_min_stake: int

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(int(v) for v in vars(self).values())


@dataclass(frozen=True)
class CourtRequest:
    request_id: int
    consumer: str
    status: str
    deadline: int
    window_end: int  # the challenge window's end; once challenged, the vote's
    commit_block: int
    node: str | None  # before the commitment: the node the consumer named (None: any)
    amount: int
    model_key: bytes
    input_commitment: bytes
    output_hash: bytes
    challenger: str | None
    votes_cheated: int
    votes_honest: int


@dataclass(frozen=True)
class Commitment:
    """One result to commit: its request, signed instances and the digest of its bundle's bytes."""

    request_id: int
    instances: list[int]
    bundle_digest: bytes


def packed(instances: list[int]) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in instances)


def leaf(c: Commitment) -> bytes:
    """keccak256(abi.encode(requestId, instances, bundleDigest)): the batch tree's leaf."""
    return keccak(c.request_id.to_bytes(32, "big") + packed(c.instances) + c.bundle_digest)


def merkle_root(leaves: list[bytes]) -> bytes:
    """The contract's tree: pairs hashed in sorted order, an odd last node carried up."""
    if not leaves:
        raise ValueError("an empty batch has no root")
    level = list(leaves)
    while len(level) > 1:
        nxt = [keccak(min(a, b) + max(a, b)) for a, b in zip(level[0::2], level[1::2], strict=False)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _address(value: str) -> str | None:
    return None if int(value, 16) == 0 else value


class AttestationCourt(BoundContract):
    artifact_name = "AttestationCourt"
    MAX_BATCH = 256

    def params(self) -> CourtParams:
        return CourtParams(*(int(v) for v in self._call("params")))

    def set_params(self, params: CourtParams, sender: LocalAccount) -> TxResult:
        return self._send("setParams", sender, params.as_tuple())

    def stake(self, amount: int, sender: LocalAccount, *, validator: bool) -> TxResult:
        return self._send("stake", sender, amount, validator)

    def stake_of(self, address: str, *, validator: bool) -> int:
        return int(self._call("validatorStake" if validator else "nodeStake", address))

    def request(self, model_key: bytes, input_commitment: bytes, deadline: int, sender: LocalAccount, *,
                node: str | None = None) -> int:
        tx = self._send("request", sender, model_key, input_commitment, deadline, node or ZERO_ADDRESS)
        return int(self.decode_events(tx, "RequestCreated")[0]["requestId"])

    def request_tx(self, model_key: bytes, input_commitment: bytes, deadline: int, sender: LocalAccount, *,
                   node: str | None = None) -> tuple[int, TxResult]:
        tx = self._send("request", sender, model_key, input_commitment, deadline, node or ZERO_ADDRESS)
        return int(self.decode_events(tx, "RequestCreated")[0]["requestId"]), tx

    def commit(self, request_id: int, instances: list[int], sender: LocalAccount,
               bundle_digest: bytes = b"\x00" * 32) -> TxResult:
        """Commit ``instances`` signed by ``sender`` (EIP-191 over their packed hash): the node attests them."""
        signature = bytes(sender.sign_message(encode_defunct(primitive=keccak(packed(instances)))).signature)
        return self._send("commit", sender, request_id, instances, bundle_digest, signature)

    def commit_batch(self, batch: list[Commitment], sender: LocalAccount) -> TxResult:
        """Commit several results in one transaction: ``sender`` signs the Merkle root of their leaves."""
        if not 0 < len(batch) <= self.MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {self.MAX_BATCH} commitments, not {len(batch)}")
        root = merkle_root([leaf(c) for c in batch])
        signature = bytes(sender.sign_message(encode_defunct(primitive=root)).signature)
        return self._send("commitBatch", sender, [c.request_id for c in batch], [c.instances for c in batch],
                          [c.bundle_digest for c in batch], signature)

    def is_sampled(self, request_id: int, validator: str) -> bool:
        return bool(self._call("isSampled", request_id, validator))

    def challenge(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("challenge", sender, request_id)

    def vote(self, request_id: int, node_cheated: bool, sender: LocalAccount) -> TxResult:
        return self._send("vote", sender, request_id, node_cheated)

    def has_voted(self, request_id: int, validator: str) -> bool:
        return bool(self._call("hasVoted", request_id, validator))

    def finalize(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("finalize", sender, request_id)

    def close_undecided(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("closeUndecided", sender, request_id)

    def refund(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("refund", sender, request_id)

    def request_count(self) -> int:
        return int(self._call("requestCount"))

    def get_request(self, request_id: int) -> CourtRequest:
        r = self._call("getRequest", request_id)
        return CourtRequest(request_id, str(r[0]), STATUS[int(r[1])], int(r[2]), int(r[3]), int(r[4]),
                            _address(str(r[5])), int(r[6]), bytes(r[7]), bytes(r[8]), bytes(r[9]),
                            _address(str(r[10])), int(r[11]), int(r[12]))

    def status(self, request_id: int) -> str:
        return STATUS[int(self._call("getRequest", request_id)[1])]


class CourtValidator(BoundContract):
    """ERC-8004 validator of attested work: 100 when the court paid the node, 0 when it slashed it."""

    artifact_name = "CourtValidator"

    def request_hash(self, request_id: int) -> bytes:
        return bytes(self._call("requestHashOf", request_id))

    def validate(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("validate", sender, request_id)
