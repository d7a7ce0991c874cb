"""x402 payments: the server-side gate (verify, settle once) and node-signed receipts.

The paying client is ``proofmarket.sdk.pay``.

The API calls :class:`PaymentGate` explicitly (no x402 middleware): verify before proving, settle
after the proof is ready, release if proving fails. See ``gate.py`` for the flow.
"""

from proofmarket.payments.facilitators import chain_id_of, local_facilitator, network_id, remote_facilitator
from proofmarket.payments.gate import PaymentGate
from proofmarket.payments.headers import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    Discovery,
    payment_response_header,
)
from proofmarket.payments.ledger import InMemoryNonceLedger, LedgerEntry, NonceLedger
from proofmarket.payments.types import PaidOnChain, VerifiedPayment, payment_key
from proofmarket.systems.receipts import offer_receipt_extension, sign_receipt, verify_receipt

__all__ = [
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "Discovery",
    "InMemoryNonceLedger",
    "LedgerEntry",
    "NonceLedger",
    "PaymentGate",
    "PaidOnChain",
    "VerifiedPayment",
    "chain_id_of",
    "local_facilitator",
    "network_id",
    "offer_receipt_extension",
    "payment_key",
    "payment_response_header",
    "remote_facilitator",
    "sign_receipt",
    "verify_receipt",
]
