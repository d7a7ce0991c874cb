"""Decode a PAYMENT-SIGNATURE header and check it against the required terms, before any RPC.

Every refusal here has its own error; the facilitator only sees payments that could be valid.
"""

from __future__ import annotations

import binascii
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

from eth_utils.address import is_address, to_checksum_address
from pydantic import ValidationError
from x402.http import decode_payment_signature_header
from x402.mechanisms.evm import ExactEIP3009Payload, hash_eip3009_authorization, verify_eoa_signature
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.core.errors import (
    PaymentAmountMismatch,
    PaymentError,
    PaymentExpired,
    PaymentMalformed,
    PaymentMismatch,
    PaymentNotYetValid,
    PaymentRequired,
    PaymentWindowTooShort,
)
from proofmarket.payments.facilitators import chain_id_of
from proofmarket.payments.types import VerifiedPayment

_UINT = re.compile(r"^[0-9]{1,78}$")
_NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+$")


def decode_payment(header: str | None) -> PaymentPayload:
    """The x402 v2 payload in ``header``; v1 payloads and undecodable headers are refused."""
    if not header or not header.strip():
        raise PaymentRequired("this call needs an x402 payment in the PAYMENT-SIGNATURE header")
    try:
        payload = decode_payment_signature_header(header.strip())
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError, ValidationError, ValueError) as exc:
        raise PaymentMalformed(f"the PAYMENT-SIGNATURE header is not a base64 x402 payment: {exc}") from exc
    if not isinstance(payload, PaymentPayload) or payload.x402_version != 2:
        raise PaymentMalformed("only x402 version 2 payments are accepted", version=payload.x402_version)
    return payload


def payload_of_scheme(header: str | None, scheme: str) -> PaymentPayload | None:
    """The header's x402 v2 payload when it pays with ``scheme``, else None (absent, undecodable, another scheme):
    how a rail tells that a request's payment is its own."""
    if not header:
        return None
    try:
        payload = decode_payment(header)
    except PaymentError:
        return None
    return payload if payload.accepted.scheme == scheme else None


def authorization(payload: PaymentPayload) -> dict[str, str]:
    """The EIP-3009 ``authorization`` of an exact/EVM payload, every field checked for shape."""
    inner: dict[str, Any] = payload.payload
    auth = inner.get("authorization")
    if not isinstance(auth, dict):
        raise PaymentMalformed("the payment is not an EIP-3009 authorization (the only transfer method accepted)")
    fields = {name: auth.get(name) for name in ("from", "to", "value", "validAfter", "validBefore", "nonce")}
    problems = [f"{name}={value!r}" for name, value in fields.items() if not _well_formed(name, value)]
    signature = inner.get("signature")
    if not isinstance(signature, str) or not _HEX.match(signature):
        problems.append("signature")
    if problems:
        raise PaymentMalformed(f"the payment authorization is malformed: {', '.join(problems)}")
    return {name: str(value) for name, value in fields.items()}


def _well_formed(name: str, value: object) -> bool:
    if not isinstance(value, str):
        return False
    if name in ("from", "to"):
        return bool(is_address(value))
    if name == "nonce":
        return bool(_NONCE.match(value))
    return bool(_UINT.match(value))


def check_terms(
    payload: PaymentPayload,
    requirements: PaymentRequirements,
    sdk_match: PaymentRequirements | None,
    signed: tuple[str, str] | None = None,
) -> None:
    """Amount, payee, asset, network and scheme must be the required ones; ``sdk_match`` is the SDK's
    exact comparison of ``payload.accepted`` with ``requirements`` (None when anything differs). ``signed``: the
    amount and recipient the payer's signature names (default: an exact payload's EIP-3009 ``value`` and ``to``)."""
    if signed is None:
        auth = authorization(payload)
        signed = (auth["value"], auth["to"])
    value, to = signed
    accepted = payload.accepted
    expected = int(requirements.amount)
    if int(accepted.amount) != expected or int(value) != expected:
        raise PaymentAmountMismatch(
            f"the payment authorizes {value} units, the price is {expected}",
            expected=str(expected),
            authorized=value,
            accepted=accepted.amount,
        )
    mismatched = [
        name
        for name, ours, theirs in (
            ("scheme", requirements.scheme, accepted.scheme),
            ("network", requirements.network, accepted.network),
            ("asset", requirements.asset.lower(), accepted.asset.lower()),
            ("payTo", requirements.pay_to.lower(), accepted.pay_to.lower()),
            ("authorization.to", requirements.pay_to.lower(), to.lower()),
        )
        if ours != theirs
    ]
    if mismatched:
        raise PaymentMismatch(f"the payment does not match the required {', '.join(mismatched)}", fields=mismatched)
    if sdk_match is None:
        raise PaymentMismatch("the payment was made for other terms (maxTimeoutSeconds or token domain differ)")


def check_window(valid_before: int, valid_after: int, min_validity_s: int, max_timeout_s: int) -> None:
    """An authorization's time window (``validBefore``/``validAfter`` of EIP-3009, ``deadline``/``validAfter`` of an
    upto Permit2 witness) leaves the node ``min_validity_s`` to queue, run and settle the call, and has begun."""
    now = int(time.time())
    if valid_before <= now:
        raise PaymentExpired("the payment authorization has expired", valid_before=valid_before, now=now)
    if valid_before < now + min_validity_s:
        raise PaymentWindowTooShort(
            f"the payment authorization expires in {valid_before - now} s; this node needs at least "
            f"{min_validity_s} s (queue, proof and settlement): sign it valid until at least now + "
            f"{min_validity_s} s (the terms allow up to maxTimeoutSeconds = {max_timeout_s})",
            valid_before=valid_before, now=now, min_validity_seconds=min_validity_s,
            max_timeout_seconds=max_timeout_s)
    if valid_after > now:
        raise PaymentNotYetValid("the payment authorization is not valid yet", valid_after=valid_after, now=now)


def check_resource(payload: PaymentPayload, resource_url: str) -> None:
    """The payment's ``resource`` (when it names one) must be this route: same path, so the same model."""
    named = payload.resource.url if payload.resource is not None else None
    if named is None:
        return
    if urlsplit(named).path.rstrip("/") != urlsplit(resource_url).path.rstrip("/"):
        raise PaymentMismatch(
            "this payment was made for another resource: pay for this route's terms",
            fields=["resource"], paid_for=named, resource=resource_url,
        )


def verified_payment(payload: PaymentPayload, requirements: PaymentRequirements) -> VerifiedPayment:
    auth = authorization(payload)
    return VerifiedPayment(
        payload=payload,
        requirements=requirements,
        payer=to_checksum_address(auth["from"]),
        nonce=auth["nonce"].lower(),
        valid_after=int(auth["validAfter"]),
        valid_before=int(auth["validBefore"]),
    )


def eoa_signature_valid(payment: VerifiedPayment) -> bool:
    """Whether the payment's signature recovers to its payer as a plain (EOA) ECDSA signature.

    Pure computation: it separates a bad signature from a facilitator that could not check one."""
    evm_payload = ExactEIP3009Payload.from_dict(payment.payload.payload)
    signature = bytes.fromhex((evm_payload.signature or "0x")[2:])
    if len(signature) != 65:
        return False
    extra = payment.requirements.extra or {}
    digest = hash_eip3009_authorization(
        evm_payload.authorization,
        chain_id_of(payment.network),
        payment.asset,
        str(extra.get("name", "")),
        str(extra.get("version", "")),
    )
    return bool(verify_eoa_signature(digest, signature, payment.payer))
