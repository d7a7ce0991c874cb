"""Turn revert data into a plain sentence, decoding custom errors by name from contract ABIs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

REQUEST_STATUS = ("None", "Open", "Accepted", "Fulfilled", "Rejected", "Refunded")  # InferenceMarket's
COURT_STATUS = ("None", "Open", "Committed", "Challenged", "Paid", "Slashed", "Refunded", "Withheld")
# the status enum each error's `status` argument belongs to (errors not listed: the market's)
_STATUS_OF_ERROR = {"WrongStatus": COURT_STATUS}
_PANICS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}

# Plain sentences for the errors a user meets; other errors print as Name(arg=value, ...).
_SENTENCES = {
    "ModelInactive": "model {modelId} is not active",
    "InvalidProof": "the chain did not verify the proof: nothing was paid, and the payer's authorization stays unused",
    "PriceAboveMax": "the model's price {price} is above the {maxAmount} the payer authorized",
    "UnknownModel": "model {modelId} is not registered",
    "ModelAlreadyRegistered": "model {modelId} is already registered",
    "NotModelOwner": "{caller} does not own model {modelId}",
    "VerifierHasNoCode": "there is no contract at the verifier address {verifier}",
    "OwnerShareTooHigh": "the owner share {ownerShareBps} bps is above the maximum of {maxBps} bps",
    "ZeroPrice": "the price must be above zero",
    "InvalidDeadline": "the deadline {deadline} is not in the next 30 days (chain time {nowTs})",
    "UnknownRequest": "request {requestId} does not exist",
    "RequestNotPending": "request {requestId} is already settled (status {status})",
    "RequestNotOpen": "request {requestId} was already accepted or settled (status {status})",
    "RequestExpired": "request {requestId} expired at {deadline}",
    "DeadlineNotReached": "request {requestId} can be refunded only after its deadline {deadline}",
    "NotConsumer": "{caller} is not the consumer of request {requestId}",
    "NotAssignedProver": "request {requestId} is not claimed by the sender (claimed by {assigned}): "
    "accept it before fulfilling it",
    "ClaimExpired": "the claim on request {requestId} expired at {claimExpiry}",
    "InstanceCountMismatch": "the proof has {given} public instances, the model has {expected}",
    "BadInstanceCount": "an instance count of {instanceCount} is below the minimum of {minimum}",
    "ClaimWindowOutOfRange": "a claim window of {window} s is outside 60 s .. 1 day",
    "MinStakeTooHigh": "a minimum stake of {amount} is above the cap",
    "ClaimBondTooHigh": "a claim bond of {bond} is above the minimum stake {minStake}",
    "ParamsDelayTooLong": "a parameter delay of {delay} s is above 30 days",
    "NoPendingParams": "no parameter change is scheduled",
    "ParamsNotDue": "the scheduled parameters apply only from {eta} (chain time)",
    "UnstakeDelayTooLong": "an unstake delay of {delay} s is above 30 days",
    "OnlyMarket": "only the market may sweep a splitter ({caller} tried)",
    "ProverNotAuthorized": "{prover} is not an authorised prover",
    "InsufficientStake": "prover {prover} has {stake} staked, below the minimum of {minStake}",
    "TooFewInstances": "the proof has {given} public instances, at least {needed} are needed",
    "InputCommitmentMismatch": "the proof is for another input: its input instances hash to {actual}, "
    "the request committed to {expected}",
    "ParamsCommitmentMismatch": "the proof is for another model: its params commitment is {actual}, "
    "the model registered {expected}",
    "VerifierOutOfGas": "the verifier ran out of gas: raise the gas limit",
    "BadBatch": "a batch of {requests} requests does not fit a batch circuit of {size} calls",
    "NoBatchVerifier": "model {modelId} has no batch verifier of {size} calls registered",
    "BatchVerifierTooNew": "request {requestId} was made before the batch verifier was registered (at "
    "{registeredAt}): fulfil it alone",
    "BatchModelMismatch": "request {requestId} is for another model ({modelId}) than the batch",
    "BatchSlotTaken": "slot {slot} is outside the batch or given to two requests",
    "BatchOrder": "request {requestId} is not after the batch's previous request: give each request once, ids in "
    "increasing order",
    "BadBatchSize": "a batch of {size} calls is outside 2 .. {maximum}",
    "BatchVerifierAlreadyRegistered": "model {modelId} already has a batch verifier of {size} calls",
    "FeeTooHigh": "the platform fee {bps} bps is above the maximum of {maxBps} bps",
    "SlashTooHigh": "the slash share {bps} bps is above the maximum of {maxBps} bps",
    "InsufficientBalance": "only {available} is available, {requested} was asked for",
    "UnstakeLocked": "the unstaked amount unlocks at {unlockAt}",
    "ZeroAmount": "the amount must be above zero",
    "TransferRefused": "the token refuses to pay {account} (a blocklisted account): what it is owed stays owed",
    "AccountBlocked": "the token refuses to move money from or to {account} (blocklisted)",
    "EnforcedPause": "the market is paused",
    "WrongStatus": "court request {requestId} is {status}: not allowed now",
    "NoVotingWeight": "{who} has no voting weight on court request {requestId}: only stake bonded before the "
    "commitment counts",
    "PartyCannotVote": "{who} is a party to this court request: it cannot challenge or vote",
    "AlreadyVoted": "{who} already voted on court request {requestId}",
    "StakeLocked": "{who} has stake locked by an unresolved commitment or an unclaimed vote",
    "UnbondingNotDone": "the unstaked amount can be withdrawn from {readyAt} (chain time)",
    "NodeRequired": "a court request must name the node that answers it",
    "NotTheBundle": "the published bundle's sha256 is {actual}, the commitment is {expected}",
    "WindowOpen": "court request {requestId}'s window is open (deadline {windowEnd}, chain time)",
    "WindowClosed": "court request {requestId}'s window closed at {windowEnd} (chain time)",
    "NotResolved": "court request {requestId} is not resolved yet",
    "NoVote": "{who} has no unclaimed vote on court request {requestId}",
    "OwnableUnauthorizedAccount": "{account} is not the contract owner",
    "ERC20InsufficientBalance": "{sender} holds {balance} USDC units, {needed} are needed",
    "ERC20InsufficientAllowance": "the allowance to {spender} is {allowance} USDC units, {needed} are needed",
    "ERC3009UsedAuthorization": "the payment authorization {nonce} of {authorizer} was already used or canceled",
    "ERC3009InvalidSignature": "the payment authorization signature is invalid",
    "ERC3009InvalidAuthorizationTime": "the payment authorization is not valid now "
    "(valid after {validAfter}, before {validBefore})",
}


@dataclass(frozen=True)
class DecodedRevert:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    sentence: str = ""


def _fmt(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


class RevertDecoder:
    """Knows the custom errors of a set of ABIs, keyed by 4-byte selector."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]] = ()) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            self.add_abi(abi)

    def add_abi(self, abi: list[dict[str, Any]]) -> None:
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [inp["type"] for inp in item.get("inputs", [])]
            names = [inp.get("name") or f"arg{i}" for i, inp in enumerate(item.get("inputs", []))]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            self._errors[selector] = (item["name"], names, types)

    def decode(self, data: bytes) -> DecodedRevert:
        if len(data) < 4:
            return DecodedRevert("Revert", {}, "the contract reverted without a reason")
        selector, body = data[:4], data[4:]
        try:
            if selector == keccak(text="Error(string)")[:4]:
                (reason,) = decode(["string"], body)
                return DecodedRevert("Error", {"reason": reason}, f"the contract reverted: {reason}")
            if selector == keccak(text="Panic(uint256)")[:4]:
                (code,) = decode(["uint256"], body)
                return DecodedRevert("Panic", {"code": code}, f"the contract panicked: {_PANICS.get(code, code)}")
            if selector in self._errors:
                name, names, types = self._errors[selector]
                values = decode(types, body)
                args = {n: _fmt(t, v) for n, t, v in zip(names, types, values, strict=True)}
                return DecodedRevert(name, args, _sentence(name, args))
        except DecodingError:
            pass
        return DecodedRevert("Unknown", {"data": "0x" + data.hex()}, f"the contract reverted (0x{data.hex()})")


def _sentence(name: str, args: dict[str, Any]) -> str:
    names = _STATUS_OF_ERROR.get(name, REQUEST_STATUS)
    if "status" in args and isinstance(args["status"], int) and args["status"] < len(names):
        args = {**args, "status": names[args["status"]]}
    template = _SENTENCES.get(name)
    if template is not None:
        try:
            return template.format(**args)
        except (KeyError, IndexError):  # another contract's error of the same name, with other arguments
            pass
    rendered = ", ".join(f"{k}={v}" for k, v in args.items())
    return f"the contract refused the call: {name}({rendered})"
