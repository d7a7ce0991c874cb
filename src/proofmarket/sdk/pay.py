"""The paying side, on the x402 SDK client: sign EIP-3009 (``exact``), Permit2 (``upto``) or proof-conditioned EIP-3009
(``proven``: only a proof the chain verified moves it; ``payments/proven``) payments for 402 answers, within a cap.
``upto`` needs the payer's one-time Permit2 approval of the token (``proofmarket.chain.permit2``).

``paying_httpx_client`` gives an ``httpx.AsyncClient`` that answers a 402 by paying and retrying (the
SDK's ``x402_httpx_transport``). ``payment_signature_header`` does one payment by hand, synchronously,
for callers on a plain ``httpx.Client``.

The SDK client pays only assets it knows (USDC on public chains) unless spend controls allow others:
the devnet TestUSDC must be listed in ``assets``. Every allowed asset is capped at
``max_amount_atomic`` per payment, and so is every other requirement, whatever its asset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from x402 import SpendControlAsset, SpendControls, max_amount, x402Client, x402ClientSync
from x402.http import (
    PAYMENT_SIGNATURE_HEADER,
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.http.clients import x402_httpx_transport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import NoMatchingRequirementsError, PaymentPayload, PaymentRequired, SettleResponse

from proofmarket.core.errors import PaymentMalformed, PaymentRejected

Asset = tuple[str, str]  # (CAIP-2 network, token address)

__all__ = [
    "Asset",
    "PAYMENT_SIGNATURE_HEADER",
    "decode_payment_response_header",
    "nonce_of",
    "paying_httpx_client",
    "payment_required_of",
    "payment_signature_header",
    "settlement_of",
    "spend_controls",
    "x402_client",
    "x402_client_sync",
]


def spend_controls(max_amount_atomic: int, assets: Sequence[Asset] = ()) -> SpendControls:
    """Allow ``assets`` besides the SDK's default ones, each capped at ``max_amount_atomic``."""
    if max_amount_atomic <= 0:
        raise ValueError("max_amount_atomic must be positive")
    allowed: list[SpendControlAsset] = [
        {"network": network, "asset": asset, "max_amount_per_payment": str(max_amount_atomic)}
        for network, asset in assets
    ]
    return {"max_amount_per_payment": _usdc_dollars(max_amount_atomic), "allowed_assets": allowed}


SCHEMES = ("exact", "upto", "proven")  # EIP-3009 authorizations, Permit2 upto ones, proof-conditioned EIP-3009 ones


def x402_client(
    account: LocalAccount, max_amount_atomic: int, assets: Sequence[Asset] = (), networks: Sequence[str] = (),
    scheme: str = "exact", commitment: str | None = None, market: str | None = None,
) -> x402Client:
    """An async SDK client paying with ``account`` on ``networks`` (default: any EVM): ``exact`` (EIP-3009) or
    ``upto`` (a Permit2 authorization of at most the price, settled at what a metered call used)."""
    client = x402Client()
    _register(client, account, networks, scheme, commitment, market)
    client.register_policy(max_amount(max_amount_atomic))
    client.set_spend_controls(spend_controls(max_amount_atomic, assets))
    return client


def x402_client_sync(
    account: LocalAccount, max_amount_atomic: int, assets: Sequence[Asset] = (), networks: Sequence[str] = (),
    scheme: str = "exact", commitment: str | None = None, market: str | None = None,
) -> x402ClientSync:
    client = x402ClientSync()
    _register(client, account, networks, scheme, commitment, market)
    client.register_policy(max_amount(max_amount_atomic))
    client.set_spend_controls(spend_controls(max_amount_atomic, assets))
    return client


def _register(client: x402Client | x402ClientSync, account: LocalAccount, networks: Sequence[str],
              scheme: str, commitment: str | None = None, market: str | None = None) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme is one of {', '.join(SCHEMES)}, not {scheme!r}")
    if scheme == "proven":  # the payer's own input commitment: what the market makes the proof show
        if commitment is None or market is None:
            raise ValueError("the proven scheme signs the call's input commitment for a market the payer trusts: "
                             "give commitment= and market=")
        from proofmarket.payments.proven.client import ProvenEvmScheme

        for network in list(networks) or ["eip155:*"]:
            client.register(network, ProvenEvmScheme(account, lambda _: commitment, market=market))
        return
    if scheme == "exact":
        register_exact_evm_client(client, EthAccountSigner(account), networks=list(networks) or None)  # type: ignore[type-var]
        return
    from x402.mechanisms.evm.upto.client import UptoEvmScheme

    for network in list(networks) or ["eip155:*"]:
        client.register(network, UptoEvmScheme(EthAccountSigner(account)))


def paying_httpx_client(
    account: LocalAccount,
    max_amount_atomic: int,
    *,
    assets: Sequence[Asset] = (),
    networks: Sequence[str] = (),
    transport: httpx.AsyncBaseTransport | None = None,
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that pays 402 answers (once per request) and retries.

    ``transport`` is the inner transport (default: the network; tests pass ``httpx.ASGITransport``).
    """
    client = x402_client(account, max_amount_atomic, assets, networks)
    return httpx.AsyncClient(transport=x402_httpx_transport(client, transport), **httpx_kwargs)


def payment_signature_header(
    account: LocalAccount,
    payment_required_header: str,
    max_amount_atomic: int,
    *,
    assets: Sequence[Asset] = (),
    networks: Sequence[str] = (),
    nonce: str | None = None,
    scheme: str = "exact",
    commitment: str | None = None,
    market: str | None = None,
) -> str:
    """The PAYMENT-SIGNATURE value paying the 402 answer whose PAYMENT-REQUIRED header is given, with ``scheme``.

    ``nonce`` (0x + 64 hex digits) replaces the authorization's random nonce: a payment that retries an
    earlier one under new terms reuses its nonce, so that at most one of the two can ever be executed.
    """
    required = payment_required_of(payment_required_header)
    client = x402_client_sync(account, max_amount_atomic, assets, networks, scheme, commitment, market)
    try:
        payload = client.create_payment_payload(required)
    except NoMatchingRequirementsError as exc:
        raise PaymentRejected(f"no acceptable way to pay within the spend limits: {exc}") from exc
    if nonce is not None:
        if not isinstance(payload, PaymentPayload):
            raise PaymentMalformed("only x402 version 2 payments can reuse a nonce")
        payload = _with_nonce(payload, account, nonce)
    return encode_payment_signature_header(payload)


def payment_required_of(payment_required_header: str) -> PaymentRequired:
    """A node's PAYMENT-REQUIRED, decoded: ``PaymentMalformed`` unless it is an x402 version 2 payment request."""
    try:
        required = decode_payment_required_header(payment_required_header)
    except ValueError as exc:
        raise PaymentMalformed(f"the PAYMENT-REQUIRED header cannot be decoded: {exc}") from exc
    if not isinstance(required, PaymentRequired):
        raise PaymentMalformed("only x402 version 2 payment requests are supported")
    return required


def nonce_of(payment_signature_header_value: str) -> str:
    """The EIP-3009 nonce of a PAYMENT-SIGNATURE value made by ``payment_signature_header``."""
    from x402.http import decode_payment_signature_header

    payload = decode_payment_signature_header(payment_signature_header_value)
    return str(payload.payload["authorization"]["nonce"])


def _with_nonce(payload: PaymentPayload, account: LocalAccount, nonce: str) -> PaymentPayload:
    """The same exact (EIP-3009) payment, signed again with ``nonce``."""
    from proofmarket.chain.eip3009 import TokenDomain, sign_transfer_authorization
    from proofmarket.payments.facilitators import chain_id_of

    inner = dict(payload.payload)
    if "authorization" not in inner:
        raise PaymentMalformed("only exact EIP-3009 payments can reuse a nonce")
    auth = dict(inner["authorization"])
    accepted = payload.accepted
    extra = accepted.extra or {}
    domain = TokenDomain(str(extra["name"]), str(extra["version"]), chain_id_of(str(accepted.network)),
                         str(accepted.asset))
    signed = sign_transfer_authorization(account, domain, to=str(auth["to"]), value=int(auth["value"]),
                                         valid_after=int(auth["validAfter"]), valid_before=int(auth["validBefore"]),
                                         nonce=bytes.fromhex(nonce.removeprefix("0x")))
    auth["nonce"] = "0x" + signed.nonce.hex()
    inner["authorization"], inner["signature"] = auth, "0x" + signed.sig.signature.hex()
    return payload.model_copy(update={"payload": inner})


def settlement_of(payment_response_header: str) -> SettleResponse:
    """The decoded PAYMENT-RESPONSE of a paid answer."""
    return decode_payment_response_header(payment_response_header)


def _usdc_dollars(atomic: int) -> str:
    """The SDK's dollar cap for default assets (USDC, 6 decimals) equal to ``atomic`` units."""
    whole, frac = divmod(atomic, 10**6)
    return f"${whole}.{frac:06d}"
