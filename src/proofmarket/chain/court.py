"""Wrapper over ``contracts/AttestationCourt.sol``: attested escrow with a challenge window, staked nodes and
validators, bonded challenges, votes to a quorum and slashing (see the contract's notice)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from proofmarket.chain.client import TxResult
from proofmarket.chain.contracts import BoundContract

STATUS = ("none", "open", "committed", "challenged", "paid", "slashed", "refunded")


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


class AttestationCourt(BoundContract):
    artifact_name = "AttestationCourt"

    def params(self) -> CourtParams:
        return CourtParams(*(int(v) for v in self._call("params")))

    def stake(self, amount: int, sender: LocalAccount, *, validator: bool) -> TxResult:
        return self._send("stake", sender, amount, validator)

    def stake_of(self, address: str, *, validator: bool) -> int:
        return int(self._call("validatorStake" if validator else "nodeStake", address))

    def request(self, model_key: bytes, input_commitment: bytes, deadline: int, sender: LocalAccount) -> int:
        tx = self._send("request", sender, model_key, input_commitment, deadline)
        return int(self.decode_events(tx, "RequestCreated")[0]["requestId"])

    def commit(self, request_id: int, instances: list[int], sender: LocalAccount) -> TxResult:
        """Commit ``instances`` signed by ``sender`` (EIP-191 over their packed hash): the node attests them."""
        packed = b"".join(v.to_bytes(32, "big") for v in instances)
        signature = bytes(sender.sign_message(encode_defunct(primitive=keccak(packed))).signature)
        return self._send("commit", sender, request_id, instances, signature)

    def is_sampled(self, request_id: int, validator: str) -> bool:
        return bool(self._call("isSampled", request_id, validator))

    def challenge(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("challenge", sender, request_id)

    def vote(self, request_id: int, node_cheated: bool, sender: LocalAccount) -> TxResult:
        return self._send("vote", sender, request_id, node_cheated)

    def finalize(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("finalize", sender, request_id)

    def status(self, request_id: int) -> str:
        return STATUS[int(self._call("getRequest", request_id)[1])]
