"""The ``batch-settlement`` rail's checks of a payment: a deposit or a voucher decoded, bound to its channel and its
EIP-712 signature, checked locally against the channel's mirrored chain state (or by the facilitator), and the
channel reserved for the call (one call in flight per channel, a compare-and-swap on its row). A mixin of
``BatchSettlementRail`` (``batch/rail.py``), which settles, releases and refunds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from x402.http import FacilitatorClientSync
from x402.mechanisms.evm.batch_settlement import errors as scheme_errors
from x402.mechanisms.evm.batch_settlement.constants import (
    SCHEME_BATCH_SETTLEMENT,
)
from x402.mechanisms.evm.batch_settlement.facilitator.utils import (
    validate_channel_config,
)
from x402.mechanisms.evm.batch_settlement.server.storage import Channel, PendingRequest
from x402.mechanisms.evm.batch_settlement.types import (
    ChannelConfig,
    VoucherClaim,
    is_deposit_payload,
    is_voucher_payload,
)
from x402.mechanisms.evm.batch_settlement.utils import channel_id_binding_error, normalize_channel_id
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.chain.channels import ChannelOnChain
from proofmarket.core.errors import (
    PaymentChannelBusy,
    PaymentChannelRejected,
    PaymentError,
    PaymentMalformed,
    PaymentRequired,
)
from proofmarket.payments import collectable
from proofmarket.payments.batch.store import DbChannelStorage
from proofmarket.payments.batch.vouchers import accepted, canonical, check_accepted, contract_accepts_form
from proofmarket.payments.facilitators import chain_id_of
from proofmarket.payments.headers import PAYMENT_SIGNATURE_HEADER
from proofmarket.payments.parse import check_resource, payload_of_scheme
from proofmarket.payments.port import Offer
from proofmarket.payments.tickets import Ticket

log = logging.getLogger("proofmarket.payments.batch.rail")

NAME = "batch-settlement"
ONE_CALL_AT_A_TIME = "one call at a time per channel: send the next voucher once this channel's call has answered"


class ChannelChain(Protocol):
    """What the rail reads of the channel contract itself (``chain/channels.py`` ``ChannelReader``)."""

    def state(self, channel_id: str) -> ChannelOnChain: ...

    def withdrawal(self, channel_id: str) -> tuple[int, int]: ...

    def has_code(self, address: str) -> bool: ...

    def claim_reverts(self, claims: list[Any], *, bounded: bool = False) -> bool: ...


class ChannelChecks:
    """The checks of ``BatchSettlementRail`` (its terms, channel storage, facilitator and node key)."""

    terms: Any
    storage: DbChannelStorage
    facilitator: FacilitatorClientSync
    node: LocalAccount
    _pay_to: Callable[[Offer], str]
    chain: ChannelChain | None  # the contract's reads (None: only what the facilitator answers)

    def _payload(self, headers: Mapping[str, str]) -> PaymentPayload | None:
        return payload_of_scheme(headers.get(PAYMENT_SIGNATURE_HEADER), SCHEME_BATCH_SETTLEMENT)

    def _verify(self, headers: Mapping[str, str], offer: Offer, requirements: PaymentRequirements) -> Ticket:
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
        self._check_signature(raw, config, channel_id)  # the contract's own rule, before anything is served
        current, refused = self.storage.read(channel_id)
        if refused:
            raise PaymentChannelRejected(f"the chain refused this channel's voucher ({refused}): this node serves it "
                                         "no more; open another channel",
                                         reason=scheme_errors.ERR_INVALID_VOUCHER_SIGNATURE)
        price = offer.price_atomic
        base = int(current.charged_cumulative_amount) if current is not None else max(0, signed - price)
        if signed != base + price:
            raise Corrective(PaymentChannelRejected(
                f"the voucher signs {signed}, this call needs the channel's charged total {base} plus {price}",
                reason=scheme_errors.ERR_CUMULATIVE_AMOUNT_MISMATCH), current)
        if current is not None and in_flight(current):
            raise PaymentChannelBusy(ONE_CALL_AT_A_TIME, reason=scheme_errors.ERR_CHANNEL_BUSY)
        if is_deposit_payload(raw):
            state = self._deposit(payload, requirements)
        elif (current is not None and self._fresh(current) and not current.withdraw_requested_at
              and int(config.payer_authorizer, 16) != 0 and not self._exit_armed(channel_id)):
            # the mirror, while fresh and while the payer has armed no exit (one read of the contract: an exit armed
            # since the mirror was synced ends, after its delay, what the node may claim)
            state = {}
        else:
            state = self._facilitator_verify(payload, requirements)
        state = self._with_exit(channel_id, state)
        balance = int(state.get("balance", current.balance if current is not None else 0))
        claimed = int(state.get("totalClaimed", current.total_claimed if current is not None else 0))
        # the one rule (payments/collectable.py): the charged total with this call never above what the node can
        # still claim, whenever the payer's armed withdrawal is finalized
        collectable.check(signed, collectable.of_channel(balance, int(state.get("withdrawAmount", 0))),
                          what=f"the voucher's total {signed}", error=PaymentChannelRejected,
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
                channel.onchain_synced_at = now_ms()

        self._reserve(channel_id, nonce, current, mirrored, base=base, signed=signed, raw=raw)
        voucher = raw["voucher"]
        return Ticket(nonce=nonce, amount_atomic=price, payer=config.payer.lower(),
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
        extra = requirements.extra or {}
        key = (canonical_config(raw["channelConfig"]), claimed_id.lower(), self.terms.network,
               requirements.pay_to.lower(), requirements.asset.lower(), str(extra.get("receiverAuthorizer")).lower(),
               str(extra.get("withdrawDelay")))
        problem = remembered(key, lambda: channel_id_binding_error(config, claimed_id, self.terms.network)
                             or validate_channel_config(config, claimed_id, requirements))
        if problem:
            raise PaymentChannelRejected(f"the channel does not match this node's terms ({problem})", reason=problem)
        return config, normalize_channel_id(claimed_id), signed

    @staticmethod
    def _canonical_voucher(raw: dict[str, Any], config: ChannelConfig) -> None:
        """A payer authorizer's signature in the one form the channel contract takes (``payments/batch/vouchers.py``),
        or a refusal: a signature the node keeps is one the chain accepts. A payer that signs itself (no payer
        authorizer) is checked as sent, by ``_check_signature``: the contract takes its bytes or refuses them."""
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
        """The voucher is one the channel contract pays, by the contract's own rule: a payer authorizer's ECDSA
        signature (canonical form, recovering to it); a payer without code signs itself, and its signature must be
        in the form OpenZeppelin's ``ECDSA.tryRecover`` takes as it is (v 27/28, a low s: the contract does not
        normalise it); a payer with code (a contract wallet, a delegated account) answers ERC-1271, so the claim
        itself is simulated (an ``eth_call`` of ``claim`` from the receiver) before the call is served."""
        voucher = raw["voucher"]
        signature = str(voucher.get("signature", "0x"))
        if int(config.payer_authorizer, 16) != 0:  # ECDSA: the contract's own rule (payments/batch/vouchers.py)
            ok = accepted(signature, channel_id=channel_id, max_claimable=voucher["maxClaimableAmount"],
                          payer=config.payer, payer_authorizer=config.payer_authorizer,
                          chain_id=chain_id_of(self.terms.network)) == signature
        elif self.chain is not None and self.chain.has_code(config.payer):
            claim = VoucherClaim(channel=config, max_claimable_amount=str(voucher["maxClaimableAmount"]),
                                 signature=signature, total_claimed="0")
            ok = not self.chain.claim_reverts([claim], bounded=True)  # the payer's code: capped in gas and time
        else:
            ok = contract_accepts_form(signature) and accepted(
                signature, channel_id=channel_id, max_claimable=voucher["maxClaimableAmount"], payer=config.payer,
                payer_authorizer=config.payer, chain_id=chain_id_of(self.terms.network)) == signature.lower()
        if not ok:
            raise PaymentChannelRejected("the voucher's signature is not one the channel contract pays (signed by the "
                                         "payer authorizer, or the payer itself, as 65 bytes r, s, v with v 27 or 28 "
                                         "and s in the lower half of the curve order, or its wallet's ERC-1271 "
                                         "answer)", reason=scheme_errors.ERR_INVALID_VOUCHER_SIGNATURE)

    def _exit_armed(self, channel_id: str) -> bool:
        return self.chain is not None and self.chain.withdrawal(channel_id)[1] != 0

    def _with_exit(self, channel_id: str, state: dict[str, Any]) -> dict[str, Any]:
        """The channel's state with the payer's armed withdrawal read from the contract (its amount is not in the
        facilitator's answer), so that ``collectable.of_channel`` takes it away. A channel whose exit is armed is
        never checked on the mirror (the sweeper's event follower marks it), so this runs on every such call."""
        if self.chain is None or not int(state.get("withdrawRequestedAt", 0) or 0):
            return state
        onchain = self.chain.state(channel_id)
        return {**state, "balance": onchain.balance, "totalClaimed": onchain.total_claimed,
                "withdrawRequestedAt": onchain.withdraw_initiated_at, "withdrawAmount": onchain.withdraw_amount,
                "refundNonce": onchain.refund_nonce}

    def _fresh(self, channel: Channel) -> bool:
        synced = channel.onchain_synced_at
        return synced is not None and now_ms() - synced <= self.terms.state_ttl_s * 1000

    def _facilitator_verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> dict[str, Any]:
        answer = self.facilitator.verify(payload, requirements)
        if not answer.is_valid:
            reason = answer.invalid_reason or scheme_errors.ERR_CHANNEL_STATE_READ_FAILED
            raise PaymentChannelRejected(f"the channel refused the voucher: {answer.invalid_message or reason}",
                                         reason=reason)
        return state_of(answer.extra)

    def _deposit(self, payload: PaymentPayload, requirements: PaymentRequirements) -> dict[str, Any]:
        """Verify and execute the deposit on chain before the call runs (the funds stay the payer's, in its channel,
        until a call is charged; a call that fails charges nothing)."""
        self._facilitator_verify(payload, requirements)
        answer = self.facilitator.settle(payload, requirements)
        if not answer.success:
            reason = answer.error_reason or scheme_errors.ERR_DEPOSIT_TRANSACTION_FAILED
            raise PaymentChannelRejected(f"the deposit was not made: {answer.error_message or reason}", reason=reason)
        log.info("channel deposit %s by %s in %s", answer.amount, answer.payer, answer.transaction)
        return state_of(answer.extra)

    def _reserve(self, channel_id: str, nonce: str, seen: Channel | None, mirror: Callable[[Channel], None], *,
                 base: int | None = None, signed: int | None = None, raw: dict[str, Any] | None = None) -> Channel:
        """Take the channel for one call (compare-and-swap): refused when another call holds it, or when its
        charged total moved since the voucher was checked (a voucher raced by another one)."""
        outcome: dict[str, Any] = {}

        def take(current: Channel | None) -> Channel | None:
            if current is not None and in_flight(current):
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
                                  signature="0x", last_request_timestamp=now_ms())
            nxt = current.copy()
            mirror(nxt)
            nxt.pending_request = PendingRequest(pending_id=nonce, signed_max_claimable=str(signed or 0),
                                                 expires_at=now_ms() + self.terms.max_timeout_s * 1000)
            return nxt

        result = self.storage.update_channel(channel_id, take)
        if outcome.get("busy"):
            raise PaymentChannelBusy(ONE_CALL_AT_A_TIME, reason=scheme_errors.ERR_CHANNEL_BUSY)
        if "stale" in outcome:
            raise Corrective(PaymentChannelRejected("another call was charged on this channel meanwhile",
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


class Corrective(Exception):
    """A refusal whose 402 carries the channel's state (the client re-bases its voucher on it)."""

    def __init__(self, error: PaymentError, channel: Channel | None) -> None:
        super().__init__(error.message)
        self.error, self.channel = error, channel


_CHECKED: dict[tuple[str, ...], str | None] = {}
CHECKED_KEPT = 4096


def remembered(key: tuple[str, ...], check: Callable[[], str | None]) -> str | None:
    """A pure check of a channel's configuration (its id is an EIP-712 hash of it: about a millisecond each time,
    asked on every voucher of the same channel), answered once per distinct key and kept (a bounded number)."""
    if key in _CHECKED:
        return _CHECKED[key]
    problem = check()
    if len(_CHECKED) >= CHECKED_KEPT:
        _CHECKED.clear()
    _CHECKED[key] = problem
    return problem


def canonical_config(config: Any) -> str:
    """A channel configuration as one string (its keys sorted): the key of what was checked of it."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def in_flight(channel: Channel) -> bool:
    pending = channel.pending_request
    return pending is not None and pending.expires_at > now_ms()


def state_of(extra: dict[str, Any] | None) -> dict[str, Any]:
    extra = extra or {}
    state = extra.get("channelState")
    return dict(state) if isinstance(state, dict) else {k: v for k, v in extra.items() if k != "channelId"}


def now_ms() -> int:
    return int(time.time() * 1000)
