"""Map the x402 SDK's reason strings (verify ``invalid_reason``, settle ``error_reason``) to our errors."""

from __future__ import annotations

from x402.mechanisms.evm import constants as evm

from proofmarket.core.errors import (
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
    PaymentReplayed: "the payment authorization was already used",
    PaymentInsufficientFunds: "the payer's balance does not cover the price",
}


def error_for(reason: str | None, *, default: type[PaymentError] = PaymentRejected, **details: object) -> PaymentError:
    """The error for an SDK reason; ``details`` (payer, message, ...) are attached to it."""
    cls: type[PaymentError] = _BY_REASON.get(reason or "", default)
    sentence = _SENTENCES.get(cls) or f"the facilitator refused the payment ({reason or 'no reason given'})"
    return cls(sentence, reason=reason, **details)
