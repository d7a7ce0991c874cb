"""Wrapper over ``contracts/AttestationCourt.sol``: attested escrow with a challenge window, staked nodes and
validators, bonded challenges, votes to a quorum and slashing (see the contract's notice), and over
``contracts/CourtValidator.sol`` (ERC-8004 validations answered from the court's verdicts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.types import BlockIdentifier

from proofmarket.chain.artifacts import Artifact, load_artifact
from proofmarket.chain.client import ChainClient, TxResult
from proofmarket.chain.contracts import BoundContract, sent, view

STATUS = ("none", "open", "committed", "challenged", "paid", "slashed", "refunded", "withheld")
OUTCOME = ("none", "cheated", "honest", "undecided", "withheld")
SETTLED = ("paid", "slashed", "refunded")
MAX_PUBLISHED_BYTES = 256 * 1024  # the largest bundle ``publish`` takes (the contract's MAX_PUBLISHED_BYTES)
ZERO_ADDRESS = "0x" + "00" * 20
COURT_LIBRARY = "StakeCheckpoints"  # the court's stake histories, an external library (contracts/StakeCheckpoints.sol)


def deploy_court(client: ChainClient, sender: LocalAccount, *args: Any,
                 artifact: Artifact | None = None) -> tuple[str, TxResult]:
    """Deploy an AttestationCourt (``artifact``: a copy of it; default the project's) with constructor ``args``,
    after the library it links: what a deployment's plan does (``deploy_plan.court_creations``), for a court alone."""
    library, _ = client.deploy(load_artifact(COURT_LIBRARY), sender)
    return client.deploy((artifact or load_artifact("AttestationCourt")).linked({COURT_LIBRARY: library}), sender,
                         *args)


@dataclass(frozen=True)
class CourtParams:
    """The court's parameters (a request keeps the version in force when it was created)."""

    window: int
    vote_window: int
    response_window: int  # seconds a node has to publish a bundle challenged as withheld
    unbond_delay: int  # seconds between a validator's unstake and its withdrawal
    quorum_bps: int  # share of the eligible weight that must vote for a decision at the vote's end
    sample_bps: int
    slash_bps: int
    challenger_reward_bps: int
    voter_slash_bps: int  # share of its weight a voter escrows and loses on the losing side
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
    outcome: str
    version: int
    deadline: int
    window_end: int  # the challenge window's end; once challenged, the vote's (withheld: the response's)
    commit_block: int
    node: str | None  # the node the consumer named
    amount: int
    model_key: bytes
    input_commitment: bytes
    output_hash: bytes
    bundle_digest: bytes
    seed: bytes
    challenger: str | None
    exposure: int  # the node's slash if it loses, fixed at the commitment
    eligible: int  # the weight that could vote, fixed at the challenge
    weight_cheated: int
    weight_honest: int
    risk_cheated: int
    risk_honest: int
    published: bool  # the bundle was published on chain (no second availability challenge)


@dataclass(frozen=True)
class CourtVote:
    weight: int
    risk: int
    node_cheated: bool
    claimed: bool


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
    CHECKPOINT_GAS = 60_000  # a stake checkpoint pushed in a new block costs more than anvil's estimate saw

    def _send_staking(self, name: str, sender: LocalAccount, *args: Any, moves: str | None = None) -> TxResult:
        """Send a call that writes stake checkpoints: eth_estimateGas runs in the latest block, where a checkpoint
        of that block is updated in place; mined in the next block it is a new slot. ``moves``: the validator whose
        stake the call changes, which pushes a checkpoint of its own and two per model it declared (up to
        MAX_DECLARED): the margin grows with them."""
        fn = self.contract.functions[name](*args)
        with self.client.translate(name):
            estimate = int(fn.estimate_gas({"from": sender.address}))
            models = len(self.declared_models(moves)) if moves is not None else 0
        return self.client.transact(fn, sender, gas=int(estimate * 1.25) + self.CHECKPOINT_GAS * (1 + models))

    def params(self) -> CourtParams:
        """The parameters new requests get."""
        return CourtParams(*(int(v) for v in self._call("params")))

    def request_params(self, request_id: int) -> CourtParams:
        """The parameters ``request_id`` lives by (in force when it was created)."""
        return CourtParams(*(int(v) for v in self._call("requestParams", request_id)))

    params_delay = view("paramsDelay", int)

    def pending_params_eta(self) -> int:
        """When the scheduled parameters may be applied (0: none scheduled)."""
        return int(self._call("pendingParamsEta"))

    def schedule_params(self, params: CourtParams, sender: LocalAccount) -> TxResult:
        return self._send("scheduleParams", sender, params.as_tuple())

    apply_params = sent("applyParams")

    def stake(self, amount: int, sender: LocalAccount, *, validator: bool) -> TxResult:
        return self._send_staking("stake", sender, amount, validator, moves=sender.address if validator else None)

    def unstake(self, amount: int, sender: LocalAccount, *, validator: bool) -> TxResult:
        """A node's stake comes back at once; a validator's leaves its weight and is withdrawn after the
        unbonding delay (``withdraw``)."""
        return self._send_staking("unstake", sender, amount, validator, moves=sender.address if validator else None)

    withdraw = sent("withdraw")

    def stake_of(self, address: str, *, validator: bool, block: BlockIdentifier = "latest") -> int:
        return int(self._call("validatorStake" if validator else "nodeStake", address, block=block))

    def declare(self, model_key: bytes, sender: LocalAccount, *, checks: bool = True) -> TxResult:
        """Declare that ``sender`` can (or no longer can) re-check ``model_key``'s results: only a declared
        validator weighs on (and counts toward the quorum of) that model's requests committed after it."""
        return self._send_staking("declare", sender, model_key, checks, moves=sender.address)

    def declared_models(self, address: str) -> list[bytes]:
        return [bytes(m) for m in self._call("declaredModels", address)]

    def declared_at(self, address: str, model_key: bytes) -> int:
        """The block ``address`` declared ``model_key`` in (0: not declared)."""
        return int(self._call("declaredAt", address, model_key))

    max_declared = view("MAX_DECLARED", int)

    def open_votes(self, address: str) -> int:
        return int(self._call("openVotes", address))

    def weight_of(self, request_id: int, address: str) -> int:
        """What ``address``'s vote on ``request_id`` weighs (stake before the commitment, capped by its stake)."""
        return int(self._call("weightOf", request_id, address))

    def can_read(self, request_id: int, address: str) -> bool:
        """Whether a node serves the committed bundle to ``address`` (a drawn or voting validator with weight)."""
        return bool(self._call("canRead", request_id, address))

    def request(self, model_key: bytes, input_commitment: bytes, deadline: int, sender: LocalAccount, *,
                node: str) -> int:
        return self.request_tx(model_key, input_commitment, deadline, sender, node=node)[0]

    def request_tx(self, model_key: bytes, input_commitment: bytes, deadline: int, sender: LocalAccount, *,
                   node: str) -> tuple[int, TxResult]:
        """Escrow a request answered by ``node`` (required: the court refuses requests naming no node)."""
        tx = self._send("request", sender, model_key, input_commitment, deadline, node)
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
        return self._send_staking("challenge", sender, request_id)

    def challenge_availability(self, request_id: int, sender: LocalAccount) -> TxResult:
        """Challenge a result as withheld: the node must publish its bundle on chain within the response window."""
        return self._send("challengeAvailability", sender, request_id)

    def publish(self, request_id: int, bundle: bytes, sender: LocalAccount) -> TxResult:
        """Publish a bundle challenged as withheld (its sha256 must be the committed digest)."""
        return self._send("publish", sender, request_id, bundle)

    def published_bundle(self, request_id: int, from_block: int = 0) -> bytes | None:
        """The bundle published on chain for ``request_id`` (None: never published)."""
        logs = self.contract.events.Published.get_logs(from_block=from_block,
                                                       argument_filters={"requestId": request_id})
        return bytes(logs[-1]["args"]["bundle"]) if logs else None

    def payment_tx(self, request_id: int, from_block: int = 0) -> str | None:
        """The transaction that paid ``request_id`` (its ``Paid`` event; None: not paid)."""
        logs = self.contract.events.Paid.get_logs(from_block=from_block, argument_filters={"requestId": request_id})
        return "0x" + bytes(logs[-1]["transactionHash"]).hex().removeprefix("0x") if logs else None

    def vote(self, request_id: int, node_cheated: bool, sender: LocalAccount) -> TxResult:
        return self._send_staking("vote", sender, request_id, node_cheated)

    def vote_of(self, request_id: int, validator: str) -> CourtVote:
        v = self._call("voteOf", request_id, validator)
        return CourtVote(int(v[0]), int(v[1]), bool(v[2]), bool(v[3]))

    def has_voted(self, request_id: int, validator: str) -> bool:
        return self.vote_of(request_id, validator).weight > 0

    def resolve(self, request_id: int, sender: LocalAccount) -> TxResult:
        """Decide a challenge after its vote (or a withheld bundle after its response window)."""
        return self._send("resolve", sender, request_id)

    def claim(self, request_id: int, validator: str, sender: LocalAccount) -> TxResult:
        """Settle ``validator``'s vote on a resolved request: winners get their share back and the losers'."""
        return self._send_staking("claim", sender, request_id, validator, moves=validator)

    def store_seed(self, request_id: int, sender: LocalAccount) -> TxResult:
        """Store the request's draw seed (anyone, once the block after its commitment is mined): who is drawn stays
        known after the chain forgets that block's hash (256 blocks)."""
        return self._send("storeSeed", sender, request_id)

    def seed_at_risk(self, onchain: CourtRequest, now: int) -> bool:
        """The draw's seed is not stored, the block after the commitment is mined, and the window outlasts the
        chain's memory of that block's hash (256 blocks): unstored, every validator would count as drawn."""
        if any(onchain.seed) or onchain.commit_block == 0:
            return False
        if onchain.window_end - now <= 256 * self.client.profile.block_time_s / 2:  # closes before the hash is
            return False  # forgotten (with a margin)
        return self.client.block_number() > onchain.commit_block + 1

    def finalize(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("finalize", sender, request_id)

    def refund(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("refund", sender, request_id)

    request_count = view("requestCount", int)

    def get_request(self, request_id: int) -> CourtRequest:
        r = self._call("getRequest", request_id)
        return CourtRequest(request_id, str(r[0]), STATUS[int(r[1])], OUTCOME[int(r[2])], int(r[3]), int(r[4]),
                            int(r[5]), int(r[6]), _address(str(r[7])), int(r[8]), bytes(r[9]), bytes(r[10]),
                            bytes(r[11]), bytes(r[12]), bytes(r[13]), _address(str(r[14])), int(r[15]),
                            int(r[16]), int(r[17]), int(r[18]), int(r[19]), int(r[20]), bool(r[21]))

    def status(self, request_id: int) -> str:
        return STATUS[int(self._call("getRequest", request_id)[1])]


class CourtValidator(BoundContract):
    """ERC-8004 validator of attested work: 100 when the court paid the node, 0 when it slashed it."""

    artifact_name = "CourtValidator"

    def request_hash(self, request_id: int) -> bytes:
        return bytes(self._call("requestHashOf", request_id))

    def validate(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("validate", sender, request_id)
