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
Claims and the sweep to the receiver run on a schedule or a threshold (``batch/sweeps.py``: ``Sweeper``); the sweep then
sends each model's charges to its payee (the listing's revenue splitter: owner, prover and platform shares).
"""

from __future__ import annotations

import functools
import logging
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
from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import (
    build_payment_requirements,
    build_refund_claims,
    build_refund_payment_payload,
)
from x402.mechanisms.evm.batch_settlement.server.storage import Channel
from x402.mechanisms.evm.batch_settlement.types import (
    ChannelConfig,
    is_refund_payload,
)
from x402.mechanisms.evm.batch_settlement.utils import channel_id_binding_error, normalize_channel_id
from x402.schemas import PaymentRequirements, SettleResponse

from proofmarket.core.errors import (
    PaymentChannelRejected,
    PaymentError,
    PaymentSettlementFailed,
)
from proofmarket.payments.batch.checks import (
    NAME,
    ChannelChain,
    ChannelChecks,
    Corrective,
    canonical_config,
    now_ms,
    remembered,
    state_of,
)
from proofmarket.payments.batch.repo import NewCharge
from proofmarket.payments.batch.store import DbChannelStorage
from proofmarket.payments.batch.sweeps import Sweeper
from proofmarket.payments.batch.tables import TABLES
from proofmarket.payments.batch.vouchers import accepted
from proofmarket.payments.facilitators import chain_id_of
from proofmarket.payments.headers import encode_payment_response_header, with_receipt
from proofmarket.payments.parse import decode_payment
from proofmarket.payments.port import Offer, RailExtras
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket, store_paid_bundle
from proofmarket.store import ArtifactStore
from proofmarket.systems.receipts import sign_receipt

__all__ = ["NAME", "BatchSettlementRail", "ChannelTerms"]

log = logging.getLogger(__name__)
# the rule a payer meets, said in the terms the node publishes (payments/collectable.py computes it)
CREDIT_RULE = ("a voucher is served only while the channel's charged total with it stays within the channel's balance "
               "less any withdrawal its payer armed (read from the contract on every voucher); a channel whose payer "
               "arms a withdrawal has its charges claimed at once, not at the next scheduled sweep")



checksummed = functools.lru_cache(maxsize=256)(to_checksum_address)  # the node's own addresses, on every call


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


class BatchSettlementRail(ChannelChecks, RailExtras):
    name = NAME
    tables = TABLES

    @staticmethod
    def routers() -> list[Any]:
        """Its routes: /v1/channels (``routes.py``)."""
        from proofmarket.payments.batch.routes import router

        return [router]

    def __init__(self, terms: ChannelTerms, storage: DbChannelStorage, facilitator: FacilitatorClientSync,
                 node: LocalAccount, store: ArtifactStore, pay_to: Callable[[Offer], str],
                 with_terms: Callable[[PaymentError, Offer, PaymentRequirements], PaymentError]) -> None:
        self.terms, self.storage, self.facilitator, self.node, self.store = terms, storage, facilitator, node, store
        self._pay_to = pay_to  # the payee of a model's charges (its listing's splitter, or its owner)
        self._with_terms = with_terms  # the 402 with exact and this rail's terms (the exact rail builds it)
        self.authorizer = LocalAuthorizerSigner(node)
        self.sweeper: Sweeper | None = None  # claims and sweeps (a background service: the node starts it)
        self.chain: ChannelChain | None = None  # the channel contract's own reads (set by the node)

    def services(self) -> list[Sweeper]:
        """The rail's own loop (the port's ``services``): the sweeper, which the node supervises, when it runs."""
        return [self.sweeper] if self.sweeper is not None else []

    def close(self) -> None:
        """Stop the sweeper (the charges it did not sweep wait in the database for the next start)."""
        if self.sweeper is not None:
            self.sweeper.close()

    # --- terms -----------------------------------------------------------------------------------
    def requirements(self, offer: Offer, extra: Mapping[str, Any] | None = None) -> PaymentRequirements:
        t = self.terms
        return PaymentRequirements(
            scheme=SCHEME_BATCH_SETTLEMENT, network=t.network, asset=checksummed(t.asset),
            amount=str(offer.price_atomic), pay_to=checksummed(t.receiver), max_timeout_seconds=t.max_timeout_s,
            extra={"receiverAuthorizer": self.authorizer.address, "withdrawDelay": t.withdraw_delay_s,
                   "name": t.token_name, "version": t.token_version, "assetTransferMethod": "eip3009",
                   "minDeposit": str(offer.price_atomic * t.min_deposit_calls), "creditRule": CREDIT_RULE,
                   **(extra or {})})

    def describe(self) -> dict[str, Any]:
        return {"x402": True, "scheme": NAME, "network": self.terms.network, "asset": self.terms.asset,
                "receiver": self.terms.receiver, "receiver_authorizer": self.authorizer.address,
                "contract": BATCH_SETTLEMENT_ADDRESS, "collector": ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
                "withdraw_delay_s": self.terms.withdraw_delay_s, "credit": CREDIT_RULE}

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
        if int(config.payer_authorizer, 16) not in (0, int(config.payer, 16)) or remembered(
                (canonical_config(raw["channelConfig"]), claimed.lower(), self.terms.network),
                lambda: channel_id_binding_error(config, claimed, self.terms.network)):
            return None
        signature = str(voucher.get("signature", "0x"))
        ok = accepted(signature, channel_id=normalize_channel_id(claimed),
                      max_claimable=voucher.get("maxClaimableAmount", 0), payer=config.payer,
                      payer_authorizer=config.payer, chain_id=chain_id_of(self.terms.network))
        return config.payer.lower() if ok is not None else None

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        requirements = self.requirements(offer)
        try:
            return self._verify(headers, offer, requirements)
        except Corrective as exc:
            raise self._with_terms(exc.error, offer, self._corrected(requirements, exc.channel)) from None
        except PaymentError as exc:
            raise self._with_terms(exc, offer, requirements) from None

    verify_holds_funds = True  # verify reserved the voucher against its channel (one call per channel at a time)

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        return None

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
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
            nxt.last_request_timestamp = now_ms()
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
            if result.channel.withdraw_requested_at and self.sweeper is not None:
                self.sweeper.wake()  # the payer is leaving: this charge is claimed now, not at the next sweep
            return self._settlement(ticket, proof, used, int(result.channel.charged_cumulative_amount),
                                    status["receipt"], result.channel)
        done = self.storage.repo.charge(ticket.nonce)  # settled before: a restart between charging and recording
        if done is not None:
            return self._settlement(ticket, proof, done.amount, done.cumulative, done.receipt)
        why = ("the call would charge more than its voucher signed" if "over" in status else
               "the channel's reservation for this call is gone (it expired, or the channel was refunded)")
        raise PaymentSettlementFailed(f"{why}: nothing was charged", channel_id=channel_id)

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        done = self.storage.repo.charge(ticket.nonce)
        if done is None:
            raise PaymentSettlementFailed("this channel call was never charged: nothing was charged")
        return self._settlement(ticket, proof, done.amount, done.cumulative, done.receipt)

    def release(self, ticket: Ticket) -> None:
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
            raise Corrective(PaymentChannelRejected(
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
            self.release(Ticket("refund:" + channel_id, 0, doc={"channel_id": channel_id}))
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
        state = state_of(response.extra)

        def refunded(current: Channel | None) -> Channel | None:
            if current is None:
                return current
            nxt = current.copy()
            nxt.total_claimed = str(max(int(current.total_claimed), int(current.charged_cumulative_amount)))
            nxt.balance = str(state.get("balance", int(current.balance) - amount))
            nxt.refund_nonce = int(state.get("refundNonce", int(nonce) + 1))
            nxt.onchain_synced_at = now_ms()
            return nxt

        self.storage.update_channel(channel.channel_id, refunded)
        return response

    # --- verification ----------------------------------------------------------------------------
    # --- settlement ------------------------------------------------------------------------------
    def _receipt(self, ticket: Ticket, proof: ProofOutcome, channel_id: str, cumulative: int,
                 used: int) -> dict[str, Any]:
        """The node's receipt of one charge: the transaction field names the voucher commitment (channel and the
        charged total after this call), claimed on chain in a later sweep."""
        return sign_receipt(self.node, model_id=proof.model_id, input_commitment=proof.input_commitment,
                            output_hash=proof.output_hash, bundle_cid=proof.bundle_cid, network=self.terms.network,
                            transaction=f"{channel_id}:{cumulative}", payer=str(ticket.payer or ""), amount=used,
                            resource_url=str(ticket.doc.get("resource", "")))

    def _settlement(self, ticket: Ticket, proof: ProofOutcome, used: int, cumulative: int,
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
