"""The payment branch of the error tree. Import these from ``proofmarket.core.errors`` (which re-exports every class
of it), never from here."""

from __future__ import annotations

from proofmarket.core.error_base import ProofMarketError, UsageError


# --- payments -----------------------------------------------------------------------------------
class PaymentError(ProofMarketError, code="payment_error", http_status=402, exit_code=5):
    """The payment is refused; a more specific code says why."""


class PaymentRequired(PaymentError, code="payment_required"):
    """The route is paid: the 402 answer's PAYMENT-REQUIRED header gives the terms to sign (x402), or use
    credits, a pass or an API key."""


class PaymentRejected(PaymentError, code="payment_rejected"):
    """The payment was checked and refused; the message says which rule it broke."""


class PaymentMalformed(PaymentRejected, code="payment_malformed"):
    """The PAYMENT-SIGNATURE header is not a decodable x402 v2 exact/EIP-3009 payment."""


class PaymentMismatch(PaymentRejected, code="payment_mismatch"):
    """The payment names another scheme, network, asset or payee than the ones required."""


class PaymentAmountMismatch(PaymentRejected, code="payment_amount_mismatch"):
    """The payment authorizes another amount than the price in the terms."""


class PaymentExpired(PaymentRejected, code="payment_expired"):
    """The authorization's validBefore has passed (or is too close to settle safely)."""


class PaymentWindowTooShort(PaymentExpired, code="payment_window_too_short"):
    """The authorization expires before the node could queue, prove and settle the call."""


class PaymentNotYetValid(PaymentRejected, code="payment_not_yet_valid"):
    """The payment's authorization is not valid yet (validAfter in the future) or expires before the call can
    finish; sign one valid now for longer."""


class PaymentSignatureInvalid(PaymentRejected, code="payment_signature_invalid"):
    """The payment's signature is not the payer's (EIP-3009 / EIP-712), or is malformed."""


class PaymentInsufficientFunds(PaymentRejected, code="payment_insufficient_funds"):
    """The payer does not hold what the payment authorizes (token balance, channel or credits)."""


class PaymentReplayed(PaymentRejected, code="payment_replayed", http_status=409):
    """The authorization's nonce was already used on chain or already accepted by this node."""


class PaymentChannelRejected(PaymentRejected, code="payment_channel_rejected"):
    """A ``batch-settlement`` payment the channel does not allow: ``details.reason`` is the scheme's own error code
    (``invalid_batch_settlement_evm_...``: a voucher replayed or not matching the charged total, above the channel's
    balance, a bad signature, a config for another receiver...), also sent as the PAYMENT-REQUIRED ``error``."""


class PaymentAllowanceRequired(PaymentRejected, code="payment_allowance_required"):
    """An x402 ``upto`` payment moves the token through Permit2: the payer must approve Permit2
    (0x000000000022D473030F116dDEE9F6B43aC78BA3) for the token once (``proofmarket permit2 approve``, or any wallet's
    ``approve``), or pay with ``exact``."""


class ApiKeyCapReached(PaymentRejected, code="api_key_cap_reached"):
    """The API key's spend cap does not cover this call (make a new key, or one with a higher cap)."""


class PaymentChannelBusy(PaymentRejected, code="payment_channel_busy", http_status=409):
    """The channel has a call in flight: one call at a time per channel (send the next voucher after the answer)."""


class PaymentPayerBusy(PaymentRejected, code="payment_payer_busy", http_status=409):
    """Another call of this payer held its balance (checked and taken one call at a time, across the nodes on one
    database) for too long: try again."""


class PaymentSettlementFailed(PaymentError, code="payment_settlement_failed"):
    """The payment could not be settled on chain; the call's proof is kept and nobody is charged twice."""


class RateLimited(UsageError, code="rate_limited", http_status=429):
    """Too many requests from this client address, API key or payer in the current window: ``Retry-After`` says when
    to try again."""


class CreditsUnavailable(UsageError, code="credits_unavailable", http_status=404):
    """The node sells no API keys or credits (payments are off)."""


class ChannelsUnavailable(UsageError, code="channels_unavailable", http_status=404):
    """The node does not offer x402 batch-settlement channels (payments off, or no channel contract on its chain)."""


class UnknownChannel(UsageError, code="unknown_channel", http_status=404):
    """No channel (or sweep) with this id on this node."""


class PaymentSettlementPending(PaymentError, code="payment_settlement_pending"):
    """The settlement was sent (or may have been) but is not confirmed yet: the job keeps its hold and settles
    when the authorization's nonce is used on chain, or fails when it expires unused. The job runner catches it
    (the job shows ``settling``); it is not an answer of the API."""


class FacilitatorUnavailable(PaymentError, code="facilitator_unavailable", http_status=503):
    """The x402 facilitator (remote, or the in-process one's RPC) could not be reached or set up."""


# --- a consumer contract's callback: what a node pays for -------------------------------------------------
class CallbackOverLimit(UsageError, code="callback_gas_over_limit", http_status=409):
    """An escrow request whose consumer contract's callback asks for more gas than this node pays for
    (``PROOFMARKET_CALLBACK_MAX_GAS``): the node does not claim it, and the consumer takes its escrow back after the
    deadline."""


class CallbackTipTooLow(UsageError, code="callback_tip_too_low", http_status=409):
    """An escrow request (or a court delivery) whose tip does not cover the gas its consumer contract's callback asks
    for at this node's rate (``PROOFMARKET_CALLBACK_TIP_PER_MGAS``): the node does not answer it, and the consumer
    takes its escrow back after the deadline."""


class BookBehindChain(UsageError, code="book_behind_chain", http_status=503):
    """The node's account sent tokens on chain that its book does not hold (a restore from an older backup, or a
    database that lost its last writes): the node pays nothing (no payout, no refund) until an operator books them
    with ``proofmarket ledger replay``; ``proofmarket ledger check`` names each one."""


__all__ = [
    "PaymentError", "PaymentRequired", "PaymentRejected", "PaymentMalformed", "PaymentMismatch",
    "PaymentAmountMismatch", "PaymentExpired", "PaymentWindowTooShort", "PaymentNotYetValid",
    "PaymentSignatureInvalid", "PaymentInsufficientFunds", "PaymentReplayed", "PaymentChannelRejected",
    "PaymentAllowanceRequired",
    "ApiKeyCapReached", "PaymentChannelBusy", "PaymentPayerBusy", "PaymentSettlementFailed", "RateLimited",
    "CreditsUnavailable", "ChannelsUnavailable", "UnknownChannel", "PaymentSettlementPending",
    "FacilitatorUnavailable", "CallbackOverLimit", "CallbackTipTooLow", "BookBehindChain",
]

