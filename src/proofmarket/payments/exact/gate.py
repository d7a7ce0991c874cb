"""The x402 payment gate the API calls explicitly: verify before proving, settle once the proof is ready.

    gate = PaymentGate.local(rpc_url=..., signer=facilitator_account, asset=usdc)   # devnet
    gate = PaymentGate.remote(facilitator_url=..., network=profile.network, asset=profile.usdc) # production

    req = gate.requirements(price_atomic, pay_to)
    no header  -> 402, PAYMENT-REQUIRED: gate.payment_required_header(req, url, discovery=...)
    verified = gate.verify(request.headers["PAYMENT-SIGNATURE"], req)   # raises PaymentError subclasses
    ... prove; if proving fails: gate.release(verified) (nothing is charged) ...
    settlement = gate.settle(verified)                                  # at most once per payment
    200, PAYMENT-RESPONSE: gate.payment_response_header(settlement, receipt)

Built on the x402 SDK's ``x402ResourceServerSync`` with the ``exact`` EVM server scheme and the bazaar
extension; the facilitator is either in-process (``x402FacilitatorSync``) or remote
(``HTTPFacilitatorClientSync``). The SDK calls block (web3, HTTP), so async callers use
``verify_async`` / ``settle_async``, which run them in a worker thread.

Beyond the SDK's checks the gate adds: specific errors for each refusal, a ``NonceLedger`` so that one
payment cannot start two jobs (reserved at verify, released or settled later), an on-chain nonce
check and settlement recovery through the token contract when a ``ChainClient`` is given.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from x402 import x402ResourceServerSync
from x402.extensions.bazaar import bazaar_resource_server_extension
from x402.http import FacilitatorClientSync
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.schemas import (
    AssetAmount,
    FacilitatorCapabilityError,
    PaymentRequired,
    PaymentRequirements,
    ResourceConfig,
    ResourceInfo,
    SchemeNotFoundError,
)

from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import (
    FacilitatorUnavailable,
    PaymentError,
    PaymentRejected,
    PaymentReplayed,
    UsageError,
)
from proofmarket.payments.exact.accepted import InMemoryNonceLedger, NonceLedger
from proofmarket.payments.exact.reasons import explain
from proofmarket.payments.exact.settle import KeyedLocks, Settling
from proofmarket.payments.facilitators import facilitator_call, local_facilitator, network_id, remote_facilitator
from proofmarket.payments.headers import Discovery, encode_payment_required_header, payment_response_header
from proofmarket.payments.onchain import TokenReader
from proofmarket.payments.parse import (
    check_resource,
    check_terms,
    check_window,
    decode_payment,
    eoa_signature_valid,
    verified_payment,
)
from proofmarket.payments.types import PaidOnChain, VerifiedPayment

USDC_NAME, USDC_VERSION = "USD Coin", "2"


class PaymentGate(Settling):
    def __init__(
        self,
        facilitator: FacilitatorClientSync,
        *,
        network: str,
        asset: str,
        token_name: str = USDC_NAME,
        token_version: str = USDC_VERSION,
        max_timeout_seconds: int = 900,
        min_validity_seconds: int = 300,
        ledger: NonceLedger | None = None,
        chain: ChainClient | None = None,
        facilitator_simulates: bool = False,
        confirmations: int | None = None,
    ) -> None:
        """``min_validity_seconds``: refuse authorizations expiring sooner (the call would not be queued, proved
        and settled in time); ``max_timeout_seconds``: the terms' maxTimeoutSeconds (what clients sign).
        ``facilitator_simulates``: the facilitator's verify simulates the transfer on chain (the SDK's
        in-process one does), so a used nonce is refused there and the gate skips its own nonce read.
        ``confirmations``: blocks on top of a settlement's block before it counts (unset = the chain profile's)."""
        self.network = network
        self.asset = to_checksum_address(asset)
        self.token_name, self.token_version = token_name, token_version
        self.max_timeout_seconds = max_timeout_seconds
        self.min_validity_seconds = min_validity_seconds
        self.ledger: NonceLedger = ledger if ledger is not None else InMemoryNonceLedger()
        self._reader = TokenReader(chain, self.asset, confirmations=confirmations) if chain is not None else None
        self._facilitator = facilitator
        self._server = x402ResourceServerSync(facilitator)
        # The SDK's own classes do not match its Protocol annotations exactly (payment_flows, key), and the
        # scheme's constructor is unannotated.
        self._server.register(network, ExactEvmServerScheme())  # type: ignore[arg-type,no-untyped-call]
        self._server.register_extension(bazaar_resource_server_extension)  # type: ignore[arg-type]
        self._init_lock = threading.Lock()
        self._initialized = False
        self._locks = KeyedLocks()
        self._simulates = facilitator_simulates

    @classmethod
    def local(
        cls,
        *,
        rpc_url: str,
        signer: LocalAccount,
        asset: str,
        chain: ChainClient | None = None,
        confirmation_timeout_seconds: float = 120.0,
        **options: Any,
    ) -> PaymentGate:
        """In-process facilitator: ``signer`` pays the gas of settlements (devnet, or a self-hosted node);
        it waits ``confirmation_timeout_seconds`` for a receipt, then the settlement is pending."""
        client = chain if chain is not None else ChainClient(rpc_url)
        network = network_id(client.chain_id)
        wait = confirmation_timeout_seconds
        facilitator = local_facilitator(signer, rpc_url, network, confirmation_timeout_seconds=wait)
        options.setdefault("facilitator_simulates", True)
        return cls(facilitator, network=network, asset=asset, chain=client, **options)

    @classmethod
    def remote(
        cls, *, facilitator_url: str, network: str, asset: str, chain: ChainClient | None = None, **options: Any
    ) -> PaymentGate:
        """A facilitator service; pass ``chain`` (an RPC of the same network) for exact replay diagnosis."""
        return cls(remote_facilitator(facilitator_url), network=network, asset=asset, chain=chain, **options)

    # --- setup ----------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Ask the facilitator what it supports (once; retried on the next call after a failure)."""
        with self._init_lock:
            if self._initialized:
                return
            try:
                self._server.initialize()
            except FacilitatorCapabilityError as exc:
                raise FacilitatorUnavailable(f"the facilitator cannot serve this gate: {exc}") from exc
            except Exception as exc:
                raise FacilitatorUnavailable(f"the facilitator did not answer /supported: {exc}") from exc
            self._initialized = True

    def close(self) -> None:
        """Close the remote facilitator's HTTP client, if any."""
        close = getattr(self._facilitator, "close", None)
        if callable(close):
            close()

    # --- the 402 side ---------------------------------------------------------------------------
    def requirements(
        self, price_atomic: int, pay_to: str, resource_url: str | None = None, description: str | None = None
    ) -> PaymentRequirements:
        """The ``exact`` terms for one call: ``price_atomic`` units of the gate's USDC to ``pay_to``.

        ``resource_url`` and ``description`` belong to the 402 response in x402 v2, not to the
        requirements; they are accepted here for symmetry and go to ``payment_required_header``.
        """
        if price_atomic <= 0:
            raise UsageError(f"the price must be a positive number of atomic units, not {price_atomic}")
        self.initialize()
        price = AssetAmount(
            amount=str(price_atomic),
            asset=self.asset,
            extra={"name": self.token_name, "version": self.token_version},
        )
        config = ResourceConfig(
            scheme="exact",
            network=self.network,
            pay_to=to_checksum_address(pay_to),
            price=price,
            max_timeout_seconds=self.max_timeout_seconds,
        )
        try:
            return self._server.build_payment_requirements(config)[0]
        except SchemeNotFoundError as exc:
            raise FacilitatorUnavailable(f"the facilitator does not support exact on {self.network}") from exc

    @property
    def facilitator(self) -> FacilitatorClientSync:
        """The facilitator this gate verifies and settles with (in-process or remote): other x402 schemes of the
        node (``batch-settlement``) use the same one."""
        return self._facilitator

    def payment_required(
        self,
        requirements: PaymentRequirements | list[PaymentRequirements],
        resource_url: str,
        *,
        description: str = "",
        mime_type: str = "application/json",
        error: str | None = "Payment required",
        discovery: Discovery | None = None,
    ) -> PaymentRequired:
        resource = ResourceInfo(url=resource_url, description=description, mime_type=mime_type)
        extensions = None
        if discovery is not None:
            extensions = self._server.enrich_extensions(
                discovery.declaration(), discovery.request_context(resource_url)
            )
        accepts = requirements if isinstance(requirements, list) else [requirements]
        return self._server.create_payment_required_response(accepts, resource, error, extensions)

    def payment_required_header(self, requirements: PaymentRequirements | list[PaymentRequirements],
                                resource_url: str, **options: Any) -> str:
        """Base64 PAYMENT-REQUIRED (x402 v2), with the bazaar extension when ``discovery`` is given; ``options``
        are ``payment_required``'s (description, mime_type, error, discovery)."""
        return encode_payment_required_header(self.payment_required(requirements, resource_url, **options))

    @staticmethod
    def payment_response_header(settlement: PaidOnChain, receipt: dict[str, Any] | None = None) -> str:
        return payment_response_header(settlement, receipt)

    # --- verify ---------------------------------------------------------------------------------
    def verify(
        self, payment_signature_header: str | None, requirements: PaymentRequirements, resource_url: str | None = None
    ) -> VerifiedPayment:
        """Check the payment against ``requirements`` and reserve it; raises a ``PaymentError``.

        ``resource_url``: the paid route; a payment naming another resource (x402 v2 ``resource``) is
        refused, so that a payment made for one model cannot buy another at the same price and payee."""
        self.initialize()
        payload = decode_payment(payment_signature_header)
        if resource_url is not None:
            check_resource(payload, resource_url)
        check_terms(payload, requirements, self._server.find_matching_requirements([requirements], payload))
        payment = verified_payment(payload, requirements)
        check_window(payment.valid_before, payment.valid_after, self.min_validity_seconds, self.max_timeout_seconds)
        if not self.ledger.reserve(payment):
            raise PaymentReplayed(
                "this payment was already accepted by this node", payer=payment.payer, nonce=payment.nonce
            )
        try:
            if not self._simulates:
                self._check_unused(payment)
            self._facilitator_verify(payment)
        except BaseException:
            self.ledger.release(payment.key)
            raise
        return payment

    @staticmethod
    @functools.lru_cache(maxsize=256)  # a pure function of the header: the rate limiter and the route both ask
    def signed_payer(payment_signature_header: str | None) -> str | None:
        """The payer whose own signature is on this payment (checksummed), or None: not decodable, not an
        exact EIP-3009 payment, or the signature does not recover to its ``from`` (plain ECDSA only).
        Pure computation: it names who asks, it does not accept the payment."""
        if not payment_signature_header:
            return None
        try:
            payload = decode_payment(payment_signature_header)
            payment = verified_payment(payload, payload.accepted)
            return payment.payer if eoa_signature_valid(payment) else None
        except (PaymentError, ValueError, KeyError, TypeError):
            return None

    async def verify_async(
        self, payment_signature_header: str | None, requirements: PaymentRequirements
    ) -> VerifiedPayment:
        return await asyncio.to_thread(self.verify, payment_signature_header, requirements)

    def release(self, payment: VerifiedPayment) -> None:
        """Give up an unsettled payment (its job failed): nothing is charged, the nonce is free again."""
        self.ledger.release(payment.key)

    def _check_unused(self, payment: VerifiedPayment) -> None:
        if self._reader is not None and self._reader.nonce_used(payment):
            raise PaymentReplayed(
                "this payment authorization was already used on chain", payer=payment.payer, nonce=payment.nonce
            )

    def _facilitator_verify(self, payment: VerifiedPayment) -> None:
        with facilitator_call("verify"):
            result = self._server.verify_payment(payment.payload, payment.requirements).verify
        if not result.is_valid:
            raise explain(result.invalid_reason, payment, self._reader, PaymentRejected,
                          facilitator_message=result.invalid_message)
