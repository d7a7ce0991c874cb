"""Typed wrapper of the InferenceMarket escrow (see contracts/InferenceMarket.sol for the rules)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount

from proofmarket.chain.client import TxResult
from proofmarket.chain.commitments import authorization_nonce, proven_nonce
from proofmarket.chain.contracts import BoundContract, ModelRegistry, UsdcToken, sent, view
from proofmarket.chain.eip3009 import SignedAuthorization, sign_transfer_authorization
from proofmarket.chain.types import (
    ZERO_ADDRESS,
    CallbackTerms,
    Fulfilment,
    InferenceRequest,
    MarketParams,
    Payout,
    ProverInfo,
    RequestStatus,
    RequestSubmitted,
    RequestTerms,
    SplitRelease,
)
from proofmarket.core.errors import ChainError

ZERO_HASH = bytes(32)

# what each settlement event says beyond its request, prover and transaction (``Fulfilment``'s fields)
_SETTLED_FIELDS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "RequestFulfilled": lambda a: {"output_hash": bytes(a["outputHash"]), "outputs": list(a["outputs"]),
                                   "owner_amount": a["ownerAmount"], "prover_amount": a["proverAmount"],
                                   "platform_fee": a["platformFee"]},
    "ProofRejected": lambda a: {"refunded": a["refunded"], "slashed": a["slashed"]},
}


@dataclasses.dataclass(frozen=True)
class ProvenCall:
    """An x402 ``proven`` payment as ``fulfillAuthorized`` takes it (``InferenceMarket.ProvenCall``)."""

    consumer: str
    model_id: bytes  # the listing's on-chain id
    input_commitment: bytes
    max_amount: int
    auth: SignedAuthorization
    salt: bytes

    def packed(self) -> tuple[Any, ...]:
        a = self.auth
        return (self.consumer, self.model_id, self.input_commitment, self.max_amount,
                (a.valid_after, a.valid_before, self.salt, a.sig.v, a.sig.r, a.sig.s))


class InferenceMarket(BoundContract):
    artifact_name = "InferenceMarket"

    # --- linked contracts ---------------------------------------------------------------------
    def usdc(self) -> UsdcToken:
        return UsdcToken(self.client, str(self._call("usdc")))

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.client, str(self._call("registry")))

    # --- consumers ----------------------------------------------------------------------------
    def request_inference(
        self, model_key: bytes, input_commitment: bytes, deadline: int, sender: LocalAccount
    ) -> RequestSubmitted:
        """Escrow the model's price; the sender must have approved the market for it."""
        tx = self._send("requestInference", sender, model_key, input_commitment, deadline)
        return self._submitted(tx)

    def sign_request_authorization(
        self,
        consumer: LocalAccount,
        model_key: bytes,
        input_commitment: bytes,
        deadline: int,
        *,
        valid_after: int = 0,
        valid_before: int | None = None,
        salt: bytes | None = None,
    ) -> tuple[SignedAuthorization, bytes]:
        """The consumer's ReceiveWithAuthorization for this request; returns (authorization, salt)."""
        salt = salt if salt is not None else os.urandom(32)
        price = self.registry().get_model(model_key).spec.price
        nonce = authorization_nonce(model_key, input_commitment, deadline, salt)
        auth = sign_transfer_authorization(
            consumer,
            self.usdc().domain(),
            receive=True,
            to=self.address,
            value=price,
            valid_after=valid_after,
            valid_before=valid_before if valid_before is not None else deadline,
            nonce=nonce,
        )
        return auth, salt

    def request_inference_with_authorization(
        self,
        model_key: bytes,
        input_commitment: bytes,
        deadline: int,
        auth: SignedAuthorization,
        salt: bytes,
        sender: LocalAccount,
    ) -> RequestSubmitted:
        """Submit a consumer's signed authorization (``sender`` may be a relayer)."""
        packed = (auth.valid_after, auth.valid_before, salt, auth.sig.v, auth.sig.r, auth.sig.s)
        tx = self._send(
            "requestInferenceWithAuthorization",
            sender,
            auth.from_address,
            model_key,
            input_commitment,
            deadline,
            packed,
        )
        return self._submitted(tx)

    # --- x402 `proven`: an authorization only a verified proof moves ------------------------------
    def sign_proven_call(self, consumer: LocalAccount, model_id: bytes, input_commitment: bytes, max_amount: int,
                         prover: str, *, valid_before: int, valid_after: int = 0,
                         salt: bytes | None = None) -> ProvenCall:
        """The consumer's ReceiveWithAuthorization of ``max_amount`` to the market, its nonce binding the on-chain
        model id, the input commitment, the maximum and the prover (``fulfillAuthorized``)."""
        salt = salt if salt is not None else os.urandom(32)
        auth = sign_transfer_authorization(
            consumer, self.usdc().domain(), receive=True, to=self.address, value=max_amount, valid_after=valid_after,
            valid_before=valid_before, nonce=proven_nonce(model_id, input_commitment, max_amount, prover, salt))
        return ProvenCall(consumer.address, model_id, input_commitment, max_amount, auth, salt)

    def fulfill_authorized(self, call: ProvenCall, proof: bytes, instances: Sequence[int], sender: LocalAccount, *,
                           gas: int | None = None) -> Fulfilment:
        """Settle an x402 ``proven`` call with its proof (the sender is the prover its nonce names): paid only if
        the proof verifies; an invalid one reverts and moves nothing."""
        tx = self._send("fulfillAuthorized", sender, call.packed(), proof, list(instances), gas=gas)
        (request_id,) = [int(a["requestId"]) for a in self.decode_events(tx, "AuthorizedCall")]
        return self._settlements(tx, [request_id])[request_id]

    def fulfill_authorized_batch(self, calls: Sequence[tuple[ProvenCall, int]], size: int, proof: bytes,
                                 instances: Sequence[int], sender: LocalAccount, *,
                                 gas: int | None = None) -> list[Fulfilment]:
        """Settle x402 ``proven`` calls (each with its slot) with one proof of the model's batch circuit of
        ``size`` calls; their settlements in the order given."""
        tx = self._send("fulfillAuthorizedBatch", sender, [c.packed() for c, _ in calls], [s for _, s in calls], size,
                        proof, list(instances), gas=gas)
        ids = [int(a["requestId"]) for a in self.decode_events(tx, "AuthorizedCall")]
        settled = self._settlements(tx, ids)
        return [settled[i] for i in ids]

    def authorized_in(self, tx_hash: str | None) -> set[int]:
        """The records of x402 proven calls (``AuthorizedCall``) the transaction made, by request id."""
        from web3.logs import DISCARD

        receipt = self.client.receipt(tx_hash) if tx_hash else None
        if receipt is None:
            return set()
        return {int(e.args["requestId"])
                for e in self.contract.events.AuthorizedCall().process_receipt(receipt, errors=DISCARD)}

    def refund(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("refund", sender, request_id)

    # --- consumer contracts' callbacks (contracts/InferenceConsumer.sol) ---------------------
    def callback_of(self, request_id: int) -> CallbackTerms:
        """The request's callback: its gas (0: none), the prover's tip, and whether a failed one is owed."""
        gas, tip, owed = self._call("callbackOf", request_id)
        return CallbackTerms(int(gas), int(tip), bool(owed))

    def retry_callback(self, request_id: int, outputs: Sequence[int], sender: LocalAccount) -> TxResult:
        """Deliver a failed callback again with the outputs its ``RequestFulfilled`` event holds (anyone may)."""
        return self._send("retryCallback", sender, request_id, [int(v) for v in outputs])

    def callbacks(self, tx: TxResult) -> dict[int, bool]:
        """Which callbacks a fulfilment delivered: request id -> whether the consumer's call returned."""
        return {int(a["requestId"]): bool(a["ok"]) for a in self.decode_events(tx, "CallbackDelivered")}

    # --- provers ------------------------------------------------------------------------------
    def accept_request(self, request_id: int, sender: LocalAccount) -> TxResult:
        return self._send("acceptRequest", sender, request_id)

    # --- x402 revenue splits ------------------------------------------------------------------
    def splitter_for(self, model_id: bytes, prover: str) -> str:
        """The address x402 payments for ``model_id`` proved by ``prover`` are paid to."""
        return str(self._call("splitterFor", model_id, prover))

    def release_split(self, model_id: bytes, prover: str, sender: LocalAccount) -> SplitRelease:
        """Pay out the splitter's balance: owner share, platform fee, the rest to the prover."""
        tx = self._send("releaseSplit", sender, model_id, prover)
        skipped = {str(a["account"]): int(a["amount"]) for a in self.decode_events(tx, "WithdrawalSkipped")}
        for args in self.decode_events(tx, "SplitReleased"):
            return SplitRelease(bytes(args["modelId"]), str(args["prover"]), str(args["owner"]),
                                int(args["ownerAmount"]), int(args["proverAmount"]), int(args["platformFee"]), tx,
                                skipped)
        raise ChainError("releaseSplit emitted no SplitReleased event", tx=tx.tx_hash)

    def earned(self, account: str) -> int:
        """What ``account`` earned as model owner or prover (escrow fulfilments and split releases)."""
        return int(self._call("earned", account))

    def owed(self, account: str) -> int:
        """What of ``earned`` the market has not paid out to ``account`` yet (escrow fulfilments are credited:
        ``withdraw`` pays them)."""
        return int(self._call("owed", account))

    def withdraw(self, accounts: Sequence[str], sender: LocalAccount) -> Payout:
        """Pay each of ``accounts`` what it is owed, to the account itself (anyone may send it), in one
        transaction; accounts owed nothing are skipped."""
        tx = self._send("withdrawMany", sender, [self.client.w3.to_checksum_address(a) for a in accounts])
        paid = {str(args["account"]): int(args["amount"]) for args in self.decode_events(tx, "Withdrawal")}
        skipped = {str(a["account"]): int(a["amount"]) for a in self.decode_events(tx, "WithdrawalSkipped")}
        return Payout(paid, tx, skipped)

    def fulfill(
        self,
        request_id: int,
        proof: bytes,
        instances: Sequence[int],
        sender: LocalAccount,
        *,
        gas: int | None = None,
    ) -> Fulfilment:
        tx = self._send("fulfill", sender, request_id, proof, list(instances), gas=gas)
        return self._settlements(tx, [request_id])[request_id]

    def fulfill_batch(
        self,
        slots: Mapping[int, int],
        size: int,
        proof: bytes,
        instances: Sequence[int],
        sender: LocalAccount,
        *,
        gas: int | None = None,
    ) -> dict[int, Fulfilment]:
        """Settle the claimed requests ``slots`` (request id -> its slot) with one proof of the model's batch circuit
        of ``size`` calls; each request's settlement, by id."""
        ids = sorted(slots)  # the market takes each request once, ids strictly increasing
        tx = self._send("fulfillBatch", sender, ids, [slots[i] for i in ids], size, proof, list(instances), gas=gas)
        return self._settlements(tx, ids)

    def _settlements(self, tx: TxResult, request_ids: Sequence[int]) -> dict[int, Fulfilment]:
        out: dict[int, Fulfilment] = {}
        for event, status in (("RequestFulfilled", RequestStatus.FULFILLED), ("ProofRejected", RequestStatus.REJECTED)):
            for args in self.decode_events(tx, event):
                out[int(args["requestId"])] = Fulfilment(int(args["requestId"]), status, args["prover"], tx,
                                                         **_SETTLED_FIELDS[event](args))
        missing = [i for i in request_ids if i not in out]
        if missing:
            raise ChainError(f"the fulfil of request(s) {missing} emitted no settlement event", tx=tx.tx_hash)
        for request_id, ok in self.callbacks(tx).items():
            out[request_id] = dataclasses.replace(out[request_id], callback_ok=ok)
        return out

    def stake(self, amount: int, sender: LocalAccount) -> TxResult:
        return self._send("stake", sender, amount)

    def request_unstake(self, amount: int, sender: LocalAccount) -> TxResult:
        return self._send("requestUnstake", sender, amount)

    unstake = sent("unstake")

    # --- admin --------------------------------------------------------------------------------
    pause = sent("pause")

    unpause = sent("unpause")

    def set_prover_authorized(self, prover: str, authorized: bool, sender: LocalAccount) -> TxResult:
        return self._send("setProverAuthorized", sender, prover, authorized)

    def schedule_params(self, params: MarketParams, sender: LocalAccount) -> TxResult:
        """Propose new parameters; they apply after ``params_delay()`` (``apply_params``)."""
        return self._send("scheduleParams", sender, params.as_tuple())

    apply_params = sent("applyParams")

    cancel_params = sent("cancelParams")

    def withdraw_platform(self, to: str, amount: int, sender: LocalAccount) -> TxResult:
        return self._send("withdrawPlatform", sender, to, amount)

    # --- views --------------------------------------------------------------------------------
    def get_request(self, request_id: int) -> InferenceRequest:
        (consumer, deadline, fee, slash, status, prover, claim_expiry, amount, model, commitment, output, bond,
         terms) = self._call("getRequest", request_id)
        owner, verifier, share, inputs, count, created_at, params = terms
        return InferenceRequest(
            request_id,
            str(consumer),
            int(deadline),
            int(fee),
            RequestStatus(status),
            None if prover == ZERO_ADDRESS else str(prover),
            int(amount),
            bytes(model),
            bytes(commitment),
            None if bytes(output) == ZERO_HASH else bytes(output),
            slash_bps=int(slash),
            claim_expiry=int(claim_expiry),
            bond=int(bond),
            terms=RequestTerms(str(owner), str(verifier), int(share), int(inputs), int(count), int(params),
                               int(created_at)),
        )

    def get_prover(self, prover: str) -> ProverInfo:
        stake, pending, unlock_at, authorized, fulfilled, failed, expired = self._call("getProver", prover)
        return ProverInfo(
            prover,
            int(stake),
            int(pending),
            int(unlock_at),
            bool(authorized),
            int(fulfilled),
            int(failed),
            int(expired),
        )

    def is_eligible(self, prover: str) -> bool:
        return bool(self._call("isEligible", prover))

    paused = view("paused", bool)

    platform_fee_bps = view("platformFeeBps", int)

    slash_bps = view("slashBps", int)

    def params(self) -> MarketParams:
        return MarketParams.from_tuple(self._call("params"))

    def pending_params(self) -> tuple[MarketParams, int] | None:
        """The scheduled parameters and the time they may be applied, or None."""
        eta = int(self._call("pendingParamsEta"))
        return (MarketParams.from_tuple(self._call("pendingParams")), eta) if eta else None

    params_delay = view("paramsDelay", int)

    min_stake = view("minStake", int)

    unstake_delay = view("unstakeDelay", int)

    platform_balance = view("platformBalance", int)

    request_count = view("requestCount", int)

    def instances_hash(self, instances: Sequence[int]) -> bytes:
        return bytes(self._call("instancesHash", list(instances)))

    def _submitted(self, tx: TxResult) -> RequestSubmitted:
        created: list[dict[str, Any]] = self.decode_events(tx, "RequestCreated")
        if not created:
            raise ChainError("the request transaction emitted no RequestCreated event", tx=tx.tx_hash)
        args = created[0]
        return RequestSubmitted(int(args["requestId"]), int(args["amount"]), int(args["deadline"]), tx)
