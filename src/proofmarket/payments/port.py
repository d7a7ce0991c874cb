"""The payment hook of the infer route: verify before proving, settle after the proof.

    POST /v1/models/{id}/infer
      -> inputs checked (422 before any payment is looked at)
      -> PaymentPort.payer_of(headers)       -> the payer, scoping the Idempotency-Key (a known key: its job)
      -> PaymentPort.verify(headers, offer)  -> PaymentTicket | None (free) | raises 402
      -> PaymentPort.cover(ticket, held)     -> the payer's balance covers this and its other unsettled jobs
      -> job stored with the ticket (its nonce is unique: a replayed payment is refused)
      -> prove + self-verify (worker process)
      -> PaymentPort.settle(ticket, proof)   -> Settlement (payment, receipt, response headers)
                                                or PaymentSettlementPending: the job is ``settling`` and
                                                PaymentPort.follow(...) is asked until it settles or fails
      -> 200 {job_id, output, bundle_cid, bundle, payment, receipt}
    If proving fails nothing is settled and PaymentPort.release(ticket) gives the payment up; so does a
    verified payment the request turns out not to need (an idempotent retry). In async mode the job
    settles when its proof is ready.

``FreeAccess`` is the port when ``PROOFMARKET_PAYMENTS=off``. The x402 gate (``proofmarket.payments``)
implements the same port. Errors it raises may carry ``headers`` (e.g. ``PAYMENT-REQUIRED``); the API's
error handler sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proofmarket.payments.tickets import PaymentTicket, ProofOutcome, Settlement


@dataclass(frozen=True)
class Offer:
    """What a call costs: the model, its price in atomic USDC units and the paid resource's URL."""

    model_id: str
    model_name: str
    price_atomic: int
    resource: str
    description: str = "verifiable ML inference: output with a zero-knowledge proof"
    mime_type: str = "application/json"
    pay_to: str | None = None  # the registry listing's revenue splitter; None: the model row's owner or payee
    split: str | None = None  # the listing's on-chain id: its splitter is released after settlement


class PaymentPort(Protocol):
    def describe(self) -> dict[str, Any]:
        """For discovery documents: at least ``{"x402": bool}``; the gate adds scheme, network, asset, chain."""
        ...

    def verify(self, headers: Mapping[str, str], offer: Offer) -> PaymentTicket | None:
        """Check the request's payment for ``offer`` without settling it. ``None``: the call is free.
        ``headers`` are the request's (case-insensitive: ``headers.get("PAYMENT-SIGNATURE")``).
        Raise ``PaymentRequired`` (no payment) or ``PaymentRejected`` (wrong amount, expired, replayed...)."""
        ...

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        """Who pays, by the payment's own signature (no RPC), or None: scopes Idempotency-Keys by payer."""
        ...

    def cover(self, ticket: PaymentTicket, held_atomic: int) -> None:
        """Raise ``PaymentInsufficientFunds`` when the payer's balance minus ``held_atomic`` (held by its
        other unsettled jobs) does not cover ``ticket``."""
        ...

    def settle(self, ticket: PaymentTicket, proof: ProofOutcome) -> Settlement:
        """Settle a verified payment once its proof is ready (see ``proofmarket.payments.tickets.SettleHook``);
        ``PaymentSettlementPending`` when it was sent but is not confirmed yet."""
        ...

    def follow(self, ticket: PaymentTicket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """A pending settlement: settled, None (still pending) or ``PaymentSettlementFailed`` (see SettleHook)."""
        ...

    def release(self, ticket: PaymentTicket) -> None:
        """Give up a verified payment that will not be settled (its job failed, or it was not needed)."""
        ...


class FreeAccess:
    """Payments off: every call is free and nothing is ever settled."""

    def describe(self) -> dict[str, Any]:
        return {"x402": False}

    def verify(self, headers: Mapping[str, str], offer: Offer) -> PaymentTicket | None:
        return None

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        return None

    def cover(self, ticket: PaymentTicket, held_atomic: int) -> None:
        return None

    def settle(self, ticket: PaymentTicket, proof: ProofOutcome) -> Settlement:
        return Settlement()

    def follow(self, ticket: PaymentTicket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        return Settlement()

    def release(self, ticket: PaymentTicket) -> None:
        return None
