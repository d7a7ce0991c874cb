"""Map the x402 SDK's reason strings (verify ``invalid_reason``, settle ``error_reason``) and what it raises to
our errors; ``explain`` asks the token why when the reason only says the transfer fails."""

from __future__ import annotations

from x402.mechanisms.evm import constants as evm

from proofmarket.core.errors import (
    FacilitatorUnavailable,
    PaymentAmountMismatch,
    PaymentError,
    PaymentExpired,
    PaymentInsufficientFunds,
    PaymentMismatch,
    PaymentNotYetValid,
    PaymentRejected,
    PaymentReplayed,
    PaymentSignatureInvalid,
)
from proofmarket.payments.onchain import TokenReader
from proofmarket.payments.parse import eoa_signature_valid
from proofmarket.payments.types import VerifiedPayment

_BY_REASON: dict[str, type[PaymentRejected]] = {
    evm.ERR_INVALID_SIGNATURE: PaymentSignatureInvalid,
    evm.ERR_FAILED_TO_VERIFY_SIGNATURE: PaymentSignatureInvalid,
    evm.ERR_UNDEPLOYED_SMART_WALLET: PaymentSignatureInvalid,
    evm.ERR_AUTHORIZATION_VALUE_MISMATCH: PaymentAmountMismatch,
    evm.ERR_RECIPIENT_MISMATCH: PaymentMismatch,
    evm.ERR_NETWORK_MISMATCH: PaymentMismatch,
    evm.ERR_UNSUPPORTED_SCHEME: PaymentMismatch,
    evm.ERR_MISSING_EIP712_DOMAIN: PaymentMismatch,
    evm.ERR_TOKEN_NAME_MISMATCH: PaymentMismatch,
    evm.ERR_TOKEN_VERSION_MISMATCH: PaymentMismatch,
    evm.ERR_ASSET_NOT_DEPLOYED_CONTRACT: PaymentMismatch,
    evm.ERR_EIP3009_NOT_SUPPORTED: PaymentMismatch,
    evm.ERR_VALID_BEFORE_EXPIRED: PaymentExpired,
    evm.ERR_VALID_AFTER_FUTURE: PaymentNotYetValid,
    evm.ERR_NONCE_ALREADY_USED: PaymentReplayed,
    evm.ERR_INSUFFICIENT_BALANCE: PaymentInsufficientFunds,
}

# Reasons that say only "the transfer would fail / failed": the gate asks the chain why.
OPAQUE_REASONS = frozenset(
    {evm.ERR_TRANSACTION_SIMULATION_FAILED, evm.ERR_TRANSACTION_FAILED, evm.ERR_TRANSFER_EVENT_MISMATCH}
)
ERR_FAILED_TO_VERIFY_SIGNATURE = evm.ERR_FAILED_TO_VERIFY_SIGNATURE

_SENTENCES: dict[type[PaymentError], str] = {
    PaymentSignatureInvalid: "the payment signature does not match the authorization",
    PaymentAmountMismatch: "the authorized amount is not the price",
    PaymentMismatch: "the payment is for another scheme, network, asset or payee",
    PaymentExpired: "the payment authorization has expired",
    PaymentNotYetValid: "the payment authorization is not valid yet",
    PaymentReplayed: "this payment authorization was already used on chain",  # the SDK reads the token's nonce
    PaymentInsufficientFunds: "the payer's balance does not cover the price",
}


def error_for(reason: str | None, *, default: type[PaymentError] = PaymentRejected, **details: object) -> PaymentError:
    """The error for an SDK reason; ``details`` (payer, message, ...) are attached to it."""
    cls: type[PaymentError] = _BY_REASON.get(reason or "", default)
    sentence = _SENTENCES.get(cls) or f"the facilitator refused the payment ({reason or 'no reason given'})"
    return cls(sentence, reason=reason, **details)


def explain(reason: str | None, payment: VerifiedPayment, reader: TokenReader | None, default: type[PaymentError],
            **details: object) -> PaymentError:
    """An opaque "the transfer fails" becomes specific by asking the token (``reader``) why; a signature the
    facilitator failed to check (RPC down) but that recovers locally is an outage, not a refusal."""
    if reason == ERR_FAILED_TO_VERIFY_SIGNATURE and eoa_signature_valid(payment):
        return FacilitatorUnavailable(
            "the facilitator could not check the payment signature", reason=reason, **details
        )
    if reason in OPAQUE_REASONS and reader is not None:
        if reader.nonce_used(payment):
            return PaymentReplayed("this payment authorization was already used on chain", reason=reason)
        if reader.balance(payment.payer) < payment.amount:
            return PaymentInsufficientFunds("the payer's balance does not cover the price", reason=reason)
        chain_now = reader.chain_time()  # the token checks block time, the SDK wall-clock time
        if chain_now >= payment.valid_before:
            return PaymentExpired(
                "the payment authorization has expired by chain time", reason=reason, chain_time=chain_now
            )
        if chain_now <= payment.valid_after:
            return PaymentNotYetValid(
                "the payment authorization is not valid yet by chain time", reason=reason, chain_time=chain_now
            )
    return error_for(reason, default=default, payer=payment.payer, **details)
