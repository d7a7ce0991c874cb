"""The ``batch-settlement`` rail: x402 payment channels (one deposit, a cumulative voucher per call, claims batched).

    402 terms       the node offers ``batch-settlement`` beside ``exact`` (``X402Payments.also_accept``): the channel's
                    receiver is the node's account, its receiverAuthorizer the node key, withdrawDelay and minDeposit
    verify          a deposit (the first call, or a top-up) is verified and executed on chain by the facilitator
                    before the call runs (the money stays the payer's in its channel until charged); a voucher is
                    checked locally (EIP-712 signature, balance, claimed total) when the channel's mirrored chain
                    state is fresh, else by the facilitator (a chain read). The voucher must sign exactly
                    charged-so-far + this call's ceiling (else ``invalid_batch_settlement_evm_cumulative_amount_
                    mismatch`` with the channel's state in the corrective 402); one call in flight per channel
                    (``payment_channel_busy``): the reservation is a compare-and-swap on the channel's row, so
                    several nodes on one database never charge a voucher twice
    settle          charges ``ticket.used(outcome)`` (a generation: the tokens it produced; a proof: the listing's
                    price) once, in the same transaction as the channel's new charged total, with a node-signed
                    receipt naming the model, the payee and the amount (``channel_charges``)
    release         the call failed: the reservation goes, nothing is charged
    refund          ``GET /v1/channels/refund`` with a refund payload: what is charged is claimed, the rest goes back
                    to the payer (``refundWithSignature``) in one transaction
Claims and the sweep to the receiver run on a schedule or a threshold (``batch_sweeps.Sweeper``); the sweep then
sends each model's charges to its payee (the listing's revenue splitter: owner, prover and platform shares).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from x402.http import FacilitatorClientSync
from x402.mechanisms.evm.batch_settlement import errors as scheme_errors
from x402.mechanisms.evm.batch_settlement.authorizer_signer import (
    LocalAuthorizerSigner,
    sign_claim_batch,
    sign_refund,
)
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    SCHEME_BATCH_SETTLEMENT,
)
from x402.mechanisms.evm.batch_settlement.facilitator.utils import (
    validate_channel_config,
    verify_batch_settlement_voucher_typed_data,
)
from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import (
    build_payment_requirements,
    build_refund_claims,
    build_refund_payment_payload,
)
from x402.mechanisms.evm.batch_settlement.server.storage import Channel, PendingRequest
from x402.mechanisms.evm.batch_settlement.types import (
    ChannelConfig,
    is_deposit_payload,
    is_refund_payload,
    is_voucher_payload,
)
from x402.mechanisms.evm.batch_settlement.utils import channel_id_binding_error, normalize_channel_id
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse

from proofmarket.core.errors import (
    PaymentChannelBusy,
    PaymentChannelRejected,
    PaymentError,
    PaymentMalformed,
    PaymentRequired,
    PaymentSettlementFailed,
)
from proofmarket.db.channels_repo import NewCharge
from proofmarket.payments.batch_sweeps import Sweeper
from proofmarket.payments.channel_store import DbChannelStorage
from proofmarket.payments.facilitators import chain_id_of
from proofmarket.payments.headers import PAYMENT_SIGNATURE_HEADER, encode_payment_response_header, with_receipt
from proofmarket.payments.parse import check_resource, decode_payment
from proofmarket.payments.port import Offer
from proofmarket.payments.tickets import PaymentTicket, ProofOutcome, Settlement, store_paid_bundle
from proofmarket.payments.vouchers import accepted, canonical, check_accepted
from proofmarket.store import ArtifactStore
from proofmarket.systems.receipts import sign_receipt

log = logging.getLogger(__name__)

NAME = "batch-settlement"
ONE_CALL_AT_A_TIME = "one call at a time per channel: send the next voucher once this channel's call has answered"


@dataclass(frozen=True)
class ChannelTerms:
    """What the node's channels are: its receiver, the token and its EIP-712 domain, the payer's withdraw delay."""

    network: str
    asset: str
    token_name: str
    token_version: str
    receiver: str  # the node's account: claims are swept to it, then shared out per model
    withdraw_delay_s: int
    max_timeout_s: int  # the 402's maxTimeoutSeconds; also how long a call's reservation of its channel lives
    min_deposit_calls: int = 10  # minDeposit hint: this many calls at the offered price
    state_ttl_s: float = 60.0  # a mirrored chain state this fresh lets a voucher be checked without an RPC


class BatchSettlementRail:
    name = NAME

    def __init__(self, terms: ChannelTerms, storage: DbChannelStorage, facilitator: FacilitatorClientSync,
                 node: LocalAccount, store: ArtifactStore, pay_to: Callable[[Offer], str],
                 with_terms: Callable[[PaymentError, Offer, PaymentRequirements], PaymentError]) -> None:
        self.terms, self.storage, self.facilitator, self.node, self.store = terms, storage, facilitator, node, store
        self._pay_to = pay_to  # the payee of a model's charges (its listing's splitter, or its owner)
        self._with_terms = with_terms  # the 402 with exact and this rail's terms (the exact rail builds it)
        self.authorizer = LocalAuthorizerSigner(node)
        self.sweeper: Sweeper | None = None  # claims and sweeps (a background service: the node starts it)

    def close(self) -> None:
        """Stop the sweeper (the charges it did not sweep wait in the database for the next start)."""
        if self.sweeper is not None:
            self.sweeper.close()

    # --- terms -----------------------------------------------------------------------------------
    def requirements(self, offer: Offer, extra: Mapping[str, Any] | None = None) -> PaymentRequirements:
        t = self.terms
        return PaymentRequirements(
            scheme=SCHEME_BATCH_SETTLEMENT, network=t.network, asset=to_checksum_address(t.asset),
            amount=str(offer.price_atomic), pay_to=to_checksum_address(t.receiver), max_timeout_seconds=t.max_timeout_s,
            extra={"receiverAuthorizer": self.authorizer.address, "withdrawDelay": t.withdraw_delay_s,
                   "name": t.token_name, "version": t.token_version, "assetTransferMethod": "eip3009",
                   "minDeposit": str(offer.price_atomic * t.min_deposit_calls), **(extra or {})})

    def describe(self) -> dict[str, Any]:
        return {"x402": True, "scheme": NAME, "network": self.terms.network, "asset": self.terms.asset,
                "receiver": self.terms.receiver, "receiver_authorizer": self.authorizer.address,
                "contract": BATCH_SETTLEMENT_ADDRESS, "collector": ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
                "withdraw_delay_s": self.terms.withdraw_delay_s}

    # --- the port --------------------------------------------------------------------------------
    def accepts(self, headers: Mapping[str, str]) -> bool:
        return self._payload(headers) is not None

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        """The channel's payer when the voucher's own signature proves it (the payer signs its vouchers, itself or
        as its payer authorizer: one ecrecover, no RPC); None otherwise (a contract wallet, another authorizer, a
        payload naming someone else), so that nobody spends another payer's rate limit or idempotency scope."""
        payload = self._payload(headers)
        raw = payload.payload if payload is not None else {}
        try:
            config = ChannelConfig.from_dict(raw["channelConfig"])
            voucher = raw["voucher"]
            claimed = str(voucher["channelId"])
        except (KeyError, TypeError, ValueError):
            return None
        if int(config.payer_authorizer, 16) not in (0, int(config.payer, 16)) or \
                channel_id_binding_error(config, claimed, self.terms.network):
            return None
        signature = str(voucher.get("signature", "0x"))
        ok = accepted(signature, channel_id=normalize_channel_id(claimed),
                      max_claimable=voucher.get("maxClaimableAmount", 0), payer=config.payer,
                      payer_authorizer=config.payer, chain_id=chain_id_of(self.terms.network))
        return config.payer.lower() if ok is not None else None

    def verify(self, headers: Mapping[str, str], offer: Offer) -> PaymentTicket | None:
        requirements = self.requirements(offer)
        try:
            return self._verify(headers, offer, requirements)
        except _Corrective as exc:
            raise self._with_terms(exc.error, offer, self._corrected(requirements, exc.channel)) from None
        except PaymentError as exc:
            raise self._with_terms(exc, offer, requirements) from None

    verify_holds_funds = True  # verify reserved the voucher against its channel (one call per channel at a time)

    def cover(self, ticket: PaymentTicket, held_atomic: int) -> None:
        return None

    def settle(self, ticket: PaymentTicket, proof: ProofOutcome) -> Settlement:
        doc = ticket.doc
        channel_id, signed = str(doc["channel_id"]), int(doc["max_claimable"])
        used = ticket.used(proof)
        status: dict[str, Any] = {}

        def charge(current: Channel | None) -> Channel | None:
            pending = current.pending_request if current is not None else None
            if current is None or pending is None or pending.pending_id != ticket.nonce:
                status["lost"] = True
                return current
            charged = int(current.charged_cumulative_amount) + used
            if charged > signed:  # never more than the payer signed
                status["over"] = charged
                return current
            nxt = current.copy()
            nxt.charged_cumulative_amount = str(charged)
            nxt.signed_max_claimable = str(signed)
            nxt.signature = str(doc["signature"])
            nxt.last_request_timestamp = _now_ms()
            nxt.pending_request = None
            return nxt

        def row(channel: Channel) -> NewCharge:
            cumulative = int(channel.charged_cumulative_amount)
            receipt = self._receipt(ticket, proof, channel_id, cumulative, used)
            status["receipt"] = receipt
            return NewCharge(ticket=ticket.nonce, channel_id=channel_id, job_id=proof.job_id, model_id=proof.model_id,
                             pay_to=str(doc["pay_to"]), amount=used, cumulative=cumulative, receipt=receipt)

        result = self.storage.update_channel(channel_id, charge, row)
        if result.status == "updated" and result.channel is not None:
            return self._settlement(ticket, proof, used, int(result.channel.charged_cumulative_amount),
                                    status["receipt"], result.channel)
        done = self.storage.repo.charge(ticket.nonce)  # settled before: a restart between charging and recording
        if done is not None:
            return self._settlement(ticket, proof, done.amount, done.cumulative, done.receipt)
        why = ("the call would charge more than its voucher signed" if "over" in status else
               "the channel's reservation for this call is gone (it expired, or the channel was refunded)")
        raise PaymentSettlementFailed(f"{why}: nothing was charged", channel_id=channel_id)

    def follow(self, ticket: PaymentTicket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        done = self.storage.repo.charge(ticket.nonce)
        if done is None:
            raise PaymentSettlementFailed("this channel call was never charged: nothing was charged")
        return self._settlement(ticket, proof, done.amount, done.cumulative, done.receipt)

    def release(self, ticket: PaymentTicket) -> None:
        def free(current: Channel | None) -> Channel | None:
            pending = current.pending_request if current is not None else None
            if current is None or pending is None or pending.pending_id != ticket.nonce:
                return current
            nxt = current.copy()
            nxt.pending_request = None
            return nxt

        self.storage.update_channel(str(ticket.doc["channel_id"]), free)

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        """PAYMENT-RESPONSE: the charge and the channel's state after it (the SDK client's next voucher builds on
        ``chargedCumulativeAmount``), the node's receipt in the extensions."""
        payment = settlement.payment or {}
        if payment.get("scheme") != NAME:
            return {}
        response = SettleResponse(success=True, transaction="", network=str(payment["network"]),
                                  payer=str(payment["payer"]), amount=str(payment["amount"]),
                                  extra={"chargedAmount": str(payment["amount"]), "channelState": {
                                      "channelId": payment["channel_id"], "balance": payment["balance"],
                                      "totalClaimed": payment["total_claimed"],
                                      "withdrawRequestedAt": payment["withdraw_requested_at"],
                                      "refundNonce": str(payment["refund_nonce"]),
                                      "chargedCumulativeAmount": payment["charged_cumulative"]}})
        return {"PAYMENT-RESPONSE": encode_payment_response_header(with_receipt(response, settlement.receipt))}

    # --- cooperative refund ----------------------------------------------------------------------
    def refund(self, header: str | None) -> tuple[SettleResponse, Channel]:
        """A payer's cooperative refund (the SDK client's ``refund(url)``): the charged total is claimed and the
        rest of the balance (or the amount asked) goes back to the payer in one ``refundWithSignature``."""
        payload = decode_payment(header)
        raw = payload.payload
        if payload.accepted.scheme != SCHEME_BATCH_SETTLEMENT or not is_refund_payload(raw):
            raise PaymentChannelRejected("this route takes a batch-settlement refund payload",
                                         reason=scheme_errors.ERR_INVALID_PAYLOAD_TYPE)
        config, channel_id, _ = self._channel_of(raw, self.refund_terms())
        channel = self.storage.get(channel_id)
        if channel is None:
            raise PaymentChannelRejected("this node has no record of the channel",
                                         reason=scheme_errors.ERR_CHANNEL_NOT_FOUND)
        if int(raw["voucher"]["maxClaimableAmount"]) != int(channel.charged_cumulative_amount):
            raise _Corrective(PaymentChannelRejected(
                "the refund's voucher must sign the channel's charged total",
                reason=scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH), channel)
        self._canonical_voucher(raw, config)
        self._check_signature(raw, config, channel_id)
        remaining = int(channel.balance) - int(channel.charged_cumulative_amount)
        amount = int(raw.get("amount") or remaining)
        if amount <= 0 or amount > remaining:
            raise PaymentChannelRejected(f"the channel has {max(remaining, 0)} atomic units to refund",
                                         reason=scheme_errors.ERR_REFUND_AMOUNT_INVALID if remaining > 0
                                         else scheme_errors.ERR_REFUND_NO_BALANCE)
        reserved = self._reserve(channel_id, "refund:" + channel_id, channel, lambda c: None)
        try:
            response = self._send_refund(reserved, amount)
        finally:
            self.release(PaymentTicket("refund:" + channel_id, 0, doc={"channel_id": channel_id}))
        return response, self.storage.get(channel_id) or reserved

    def refund_terms(self) -> PaymentRequirements:
        return self.requirements(Offer(model_id="", model_name="channel refund", price_atomic=0, resource=""))

    def _send_refund(self, channel: Channel, amount: int) -> SettleResponse:
        network = self.terms.network
        claims = build_refund_claims(channel)
        nonce = str(channel.refund_nonce or 0)
        payload = build_refund_payment_payload(
            channel, claims, build_payment_requirements(self.terms.receiver, self.terms.asset, network), str(amount),
            nonce, sign_refund(self.authorizer, channel.channel_id, str(amount), nonce, network),
            sign_claim_batch(self.authorizer, claims, network) if claims else None)
        response = self.facilitator.settle(payload, payload.accepted)
        if not response.success:
            raise PaymentChannelRejected(f"the refund was not made: {response.error_message or response.error_reason}",
                                         reason=response.error_reason or scheme_errors.ERR_REFUND_TRANSACTION_FAILED)
        state = _state_of(response.extra)

        def refunded(current: Channel | None) -> Channel | None:
            if current is None:
                return current
            nxt = current.copy()
            nxt.total_claimed = str(max(int(current.total_claimed), int(current.charged_cumulative_amount)))
            nxt.balance = str(state.get("balance", int(current.balance) - amount))
            nxt.refund_nonce = int(state.get("refundNonce", int(nonce) + 1))
            nxt.onchain_synced_at = _now_ms()
            return nxt

        self.storage.update_channel(channel.channel_id, refunded)
        return response

    # --- verification ----------------------------------------------------------------------------
    def _payload(self, headers: Mapping[str, str]) -> PaymentPayload | None:
        header = headers.get(PAYMENT_SIGNATURE_HEADER)
        if not header:
            return None
        try:
            payload = decode_payment(header)
        except PaymentError:
            return None
        return payload if payload.accepted.scheme == SCHEME_BATCH_SETTLEMENT else None

    def _verify(self, headers: Mapping[str, str], offer: Offer, requirements: PaymentRequirements) -> PaymentTicket:
        payload = self._payload(headers)
        if payload is None:
            raise PaymentRequired("this call needs an x402 payment in the PAYMENT-SIGNATURE header")
        raw = payload.payload
        if not (is_deposit_payload(raw) or is_voucher_payload(raw)):
            raise PaymentChannelRejected(
                "a call is paid with a deposit or a voucher (send refunds to GET /v1/channels/refund)",
                reason=scheme_errors.ERR_INVALID_PAYLOAD_TYPE)
        check_accepted(payload, requirements)
        check_resource(payload, offer.resource)
        config, channel_id, signed = self._channel_of(raw, requirements)
        self._canonical_voucher(raw, config)
        refused = self.storage.repo.refused(channel_id)
        if refused:
            raise PaymentChannelRejected(f"the chain refused this channel's voucher ({refused}): this node serves it "
                                         "no more; open another channel",
                                         reason=scheme_errors.ERR_INVALID_VOUCHER_SIGNATURE)
        price = offer.price_atomic
        current = self.storage.get(channel_id)
        base = int(current.charged_cumulative_amount) if current is not None else max(0, signed - price)
        if signed != base + price:
            raise _Corrective(PaymentChannelRejected(
                f"the voucher signs {signed}, this call needs the channel's charged total {base} plus {price}",
                reason=scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH), current)
        if current is not None and _in_flight(current):
            raise PaymentChannelBusy(ONE_CALL_AT_A_TIME, reason=scheme_errors.ERR_CHANNEL_BUSY)
        if is_deposit_payload(raw):
            state = self._deposit(payload, requirements)
        elif (current is not None and self._fresh(current) and not current.withdraw_requested_at
              and int(config.payer_authorizer, 16) != 0):  # a payer leaving the channel: read the chain each call
            self._check_signature(raw, config, channel_id)
            state = {}
        else:
            state = self._facilitator_verify(payload, requirements)
        balance = int(state.get("balance", current.balance if current is not None else 0))
        claimed = int(state.get("totalClaimed", current.total_claimed if current is not None else 0))
        if signed > balance:
            raise PaymentChannelRejected(f"the voucher signs {signed}, above the channel's balance {balance}",
                                         reason=scheme_errors.ERR_CUMULATIVE_EXCEEDS_BALANCE)
        if signed <= claimed:
            raise PaymentChannelRejected(f"the voucher signs {signed}, not above what was claimed ({claimed})",
                                         reason=scheme_errors.ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED)
        nonce = f"{channel_id}:{signed}"

        def mirrored(channel: Channel) -> None:
            channel.channel_config = config
            if state:
                channel.balance, channel.total_claimed = str(balance), str(claimed)
                channel.withdraw_requested_at = int(state.get("withdrawRequestedAt", 0))
                channel.refund_nonce = int(state.get("refundNonce", 0))
                channel.onchain_synced_at = _now_ms()

        self._reserve(channel_id, nonce, current, mirrored, base=base, signed=signed, raw=raw)
        voucher = raw["voucher"]
        return PaymentTicket(nonce=nonce, amount_atomic=price, payer=config.payer.lower(),
                             per_1k_tokens=offer.per_1k_tokens,
                             doc={"channel_id": channel_id, "max_claimable": str(signed),
                                  "signature": str(voucher.get("signature", "0x")), "pay_to": self._pay_to(offer),
                                  "resource": offer.resource, "network": self.terms.network})

    def _channel_of(self, raw: dict[str, Any], requirements: PaymentRequirements) -> tuple[ChannelConfig, str, int]:
        try:
            config = ChannelConfig.from_dict(raw["channelConfig"])
            voucher = raw["voucher"]
            claimed_id = str(voucher["channelId"])
            signed = int(voucher["maxClaimableAmount"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PaymentMalformed(f"the batch-settlement payload is malformed: {exc}") from None
        problem = (channel_id_binding_error(config, claimed_id, self.terms.network)
                   or validate_channel_config(config, claimed_id, requirements))
        if problem:
            raise PaymentChannelRejected(f"the channel does not match this node's terms ({problem})", reason=problem)
        return config, normalize_channel_id(claimed_id), signed

    @staticmethod
    def _canonical_voucher(raw: dict[str, Any], config: ChannelConfig) -> None:
        """The voucher's signature in the one form the channel contract takes (``payments/vouchers.py``), or a
        refusal: a signature the node keeps is one the chain accepts. A payer that signs itself (no payer
        authorizer) may be a contract wallet (ERC-1271), whose signature bytes are its own: kept as sent, and
        isolated at claim time if the chain refuses it."""
        if int(config.payer_authorizer, 16) == 0:
            return
        voucher = raw["voucher"]
        fixed = canonical(str(voucher.get("signature", "0x")))
        if fixed is None:
            raise PaymentChannelRejected("the voucher's signature is not one the channel contract accepts (65 bytes: "
                                         "r, s below the curve order, v 27 or 28)",
                                         reason=scheme_errors.ERR_INVALID_VOUCHER_SIGNATURE)
        voucher["signature"] = fixed

    def _check_signature(self, raw: dict[str, Any], config: ChannelConfig, channel_id: str) -> None:
        voucher = raw["voucher"]
        signature = str(voucher.get("signature", "0x"))
        if int(config.payer_authorizer, 16) != 0:  # ECDSA: the contract's own rule (payments/vouchers.py)
            ok = accepted(signature, channel_id=channel_id, max_claimable=voucher["maxClaimableAmount"],
                          payer=config.payer, payer_authorizer=config.payer_authorizer,
                          chain_id=chain_id_of(self.terms.network)) == signature
        else:
            ok = verify_batch_settlement_voucher_typed_data(
                None, channel_id=channel_id, max_claimable_amount=str(voucher["maxClaimableAmount"]),  # type: ignore[arg-type]
                payer_authorizer=config.payer_authorizer, payer=config.payer, signature=signature,
                chain_id=chain_id_of(self.terms.network))
        if not ok:
            raise PaymentChannelRejected("the voucher's signature is not the payer authorizer's",
                                         reason=scheme_errors.ERR_INVALID_VOUCHER_SIGNATURE)

    def _fresh(self, channel: Channel) -> bool:
        synced = channel.onchain_synced_at
        return synced is not None and _now_ms() - synced <= self.terms.state_ttl_s * 1000

    def _facilitator_verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> dict[str, Any]:
        answer = self.facilitator.verify(payload, requirements)
        if not answer.is_valid:
            reason = answer.invalid_reason or scheme_errors.ERR_CHANNEL_STATE_READ_FAILED
            raise PaymentChannelRejected(f"the channel refused the voucher: {answer.invalid_message or reason}",
                                         reason=reason)
        return _state_of(answer.extra)

    def _deposit(self, payload: PaymentPayload, requirements: PaymentRequirements) -> dict[str, Any]:
        """Verify and execute the deposit on chain before the call runs (the funds stay the payer's, in its channel,
        until a call is charged; a call that fails charges nothing)."""
        self._facilitator_verify(payload, requirements)
        answer = self.facilitator.settle(payload, requirements)
        if not answer.success:
            reason = answer.error_reason or scheme_errors.ERR_DEPOSIT_TRANSACTION_FAILED
            raise PaymentChannelRejected(f"the deposit was not made: {answer.error_message or reason}", reason=reason)
        log.info("channel deposit %s by %s in %s", answer.amount, answer.payer, answer.transaction)
        return _state_of(answer.extra)

    def _reserve(self, channel_id: str, nonce: str, seen: Channel | None, mirror: Callable[[Channel], None], *,
                 base: int | None = None, signed: int | None = None, raw: dict[str, Any] | None = None) -> Channel:
        """Take the channel for one call (compare-and-swap): refused when another call holds it, or when its
        charged total moved since the voucher was checked (a voucher raced by another one)."""
        outcome: dict[str, Any] = {}

        def take(current: Channel | None) -> Channel | None:
            if current is not None and _in_flight(current):
                outcome["busy"] = True
                return current
            charged = int(current.charged_cumulative_amount) if current is not None else (base or 0)
            if base is not None and charged != base:
                outcome["stale"] = current
                return current
            if current is None:
                assert raw is not None and signed is not None
                current = Channel(channel_id=channel_id, channel_config=ChannelConfig.from_dict(raw["channelConfig"]),
                                  charged_cumulative_amount=str(charged), signed_max_claimable="0",
                                  signature="0x", last_request_timestamp=_now_ms())
            nxt = current.copy()
            mirror(nxt)
            nxt.pending_request = PendingRequest(pending_id=nonce, signed_max_claimable=str(signed or 0),
                                                 expires_at=_now_ms() + self.terms.max_timeout_s * 1000)
            return nxt

        result = self.storage.update_channel(channel_id, take)
        if outcome.get("busy"):
            raise PaymentChannelBusy(ONE_CALL_AT_A_TIME, reason=scheme_errors.ERR_CHANNEL_BUSY)
        if "stale" in outcome:
            raise _Corrective(PaymentChannelRejected("another call was charged on this channel meanwhile",
                                                     reason=scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH),
                              outcome["stale"])
        assert result.channel is not None
        return result.channel

    def _corrected(self, requirements: PaymentRequirements, channel: Channel | None) -> PaymentRequirements:
        """The corrective 402's batch-settlement terms: the channel's state as this node knows it, so that the SDK
        client re-bases its next voucher on the charged total."""
        if channel is None:
            return requirements
        return self.requirements_with(requirements, {
            "channelState": {"channelId": channel.channel_id, "balance": channel.balance,
                             "totalClaimed": channel.total_claimed,
                             "withdrawRequestedAt": channel.withdraw_requested_at,
                             "refundNonce": str(channel.refund_nonce),
                             "chargedCumulativeAmount": channel.charged_cumulative_amount},
            "voucherState": {"signedMaxClaimable": channel.signed_max_claimable, "signature": channel.signature}})

    @staticmethod
    def requirements_with(requirements: PaymentRequirements, extra: Mapping[str, Any]) -> PaymentRequirements:
        copy = requirements.model_copy(deep=True)
        copy.extra = {**(copy.extra or {}), **extra}
        return copy

    # --- settlement ------------------------------------------------------------------------------
    def _receipt(self, ticket: PaymentTicket, proof: ProofOutcome, channel_id: str, cumulative: int,
                 used: int) -> dict[str, Any]:
        """The node's receipt of one charge: the transaction field names the voucher commitment (channel and the
        charged total after this call), claimed on chain in a later sweep."""
        return sign_receipt(self.node, model_id=proof.model_id, input_commitment=proof.input_commitment,
                            output_hash=proof.output_hash, bundle_cid=proof.bundle_cid, network=self.terms.network,
                            transaction=f"{channel_id}:{cumulative}", payer=str(ticket.payer or ""), amount=used,
                            resource_url=str(ticket.doc.get("resource", "")))

    def _settlement(self, ticket: PaymentTicket, proof: ProofOutcome, used: int, cumulative: int,
                    receipt: dict[str, Any] | None, channel: Channel | None = None) -> Settlement:
        channel = channel or self.storage.get(str(ticket.doc["channel_id"]))
        payment: dict[str, Any] = {
            "scheme": NAME, "network": self.terms.network, "asset": self.terms.asset, "amount": str(used),
            "ceiling": str(ticket.amount_atomic), "payer": ticket.payer, "pay_to": ticket.doc.get("pay_to"),
            "receiver": self.terms.receiver, "channel_id": ticket.doc["channel_id"],
            "charged_cumulative": str(cumulative), "max_claimable": str(ticket.doc["max_claimable"]),
            "commitment": f"{ticket.doc['channel_id']}:{cumulative}",
            "balance": channel.balance if channel is not None else "0",
            "total_claimed": channel.total_claimed if channel is not None else "0",
            "withdraw_requested_at": channel.withdraw_requested_at if channel is not None else 0,
            "refund_nonce": channel.refund_nonce if channel is not None else 0}
        store_paid_bundle(self.store, proof, payment, receipt)
        return Settlement(payment=payment, receipt=receipt)


class _Corrective(Exception):
    """A refusal whose 402 carries the channel's state (the client re-bases its voucher on it)."""

    def __init__(self, error: PaymentError, channel: Channel | None) -> None:
        super().__init__(error.message)
        self.error, self.channel = error, channel


def _in_flight(channel: Channel) -> bool:
    pending = channel.pending_request
    return pending is not None and pending.expires_at > _now_ms()


def _state_of(extra: dict[str, Any] | None) -> dict[str, Any]:
    extra = extra or {}
    state = extra.get("channelState")
    return dict(state) if isinstance(state, dict) else {k: v for k, v in extra.items() if k != "channelId"}


def _now_ms() -> int:
    return int(time.time() * 1000)
