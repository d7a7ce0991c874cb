"""The ``proven`` rail: x402 payments only a proof the chain verified can capture (the scheme: ``scheme.py``).

    402 terms   an offer of a proven model sold on its registry listing (``offer.split``) lists ``proven`` beside
                ``exact`` (``X402Payments.also_accept``): payTo the InferenceMarket; extra the token's domain, the
                listing's on-chain id, the model's CID and the node's prover account
    verify      the terms (scheme, network, asset, payTo, resource; the authorized maximum at least the price), the
                time window, the nonce's binding (model, input commitment, maximum, this prover) and the payer's own
                signature, with no RPC; the signed input commitment must be the request's own input (refused before
                anything is proven otherwise); the authorization unused on chain; reserved (one call per nonce)
    cover       the payer's balance covers the maximum beside its other calls not settled yet
    settle      ``fulfillAuthorized`` with the call's proof: the market verifies it, and only then moves the price
                (split to owner, prover and platform as every fulfilment) and sends the rest back; a refusal (the
                chain did not verify the proof, a spent or expired authorization) fails the call: nothing charged
    follow      a settlement left pending: its receipt; the authorization used -> the transfer is waited for; unused
                past its validBefore -> failed, nothing charged; unused and valid -> sent again
    release     the call failed: nothing is sent; the authorization lapses unused at its validBefore
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from eth_utils.address import to_checksum_address
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.core.errors import (
    ContractReverted,
    PaymentAmountMismatch,
    PaymentError,
    PaymentInsufficientFunds,
    PaymentMismatch,
    PaymentReplayed,
    PaymentSettlementFailed,
    PaymentSettlementPending,
    ProofMarketError,
)
from proofmarket.payments import collectable
from proofmarket.payments.attempts import Attempts
from proofmarket.payments.captures import captured
from proofmarket.payments.headers import PAYMENT_SIGNATURE_HEADER, payment_response_headers
from proofmarket.payments.parse import check_resource, check_window, decode_payment, payload_of_scheme
from proofmarket.payments.port import Offer, RailExtras
from proofmarket.payments.proven.scheme import SCHEME, ProvenPayment
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.store import ArtifactStore

log = logging.getLogger(__name__)
NAME = SCHEME


@dataclass(frozen=True)
class ProvenTerms:
    network: str
    asset: str
    token_name: str
    token_version: str
    chain_id: int
    market: str
    prover: str
    min_validity_s: int
    max_timeout_s: int


class ProvenChain(Protocol):
    """What the rail does on chain: read a balance, an authorization's state, a receipt, the time; settle a call."""

    def balance(self, account: str) -> int | None: ...

    def authorization_used(self, payer: str, nonce: bytes) -> bool: ...

    def authorization_event(self, payer: str, nonce: bytes) -> tuple[str, str] | None:
        """("used" | "canceled", its transaction) once the token used or canceled the authorization, else None."""
        ...

    def fulfill(self, payment: ProvenPayment, model_id: bytes, model_cid: str, bundle: dict[str, Any]) -> str:
        """Send ``fulfillAuthorized`` with the bundle's proof; the mined transaction's hash. ``ContractReverted``:
        refused (nothing moved)."""
        ...

    def succeeded(self, tx_hash: str) -> bool | None: ...

    def now(self) -> int: ...


class ProvenRail(RailExtras):
    name = NAME

    def __init__(self, terms: ProvenTerms, chain: ProvenChain, node: Any, store: ArtifactStore,
                 with_terms: Callable[[PaymentError, Offer, PaymentRequirements], PaymentError],
                 resend_after_s: float = 240.0) -> None:
        self.terms, self.chain, self.node, self.store = terms, chain, node, store
        self._with_terms = with_terms
        self.attempts = Attempts(resend_after_s)

    # --- terms -----------------------------------------------------------------------------------
    def requirements(self, offer: Offer) -> PaymentRequirements | None:
        """The proven terms of an offer of a proven model sold on its registry listing (None for any other)."""
        if not offer.split or offer.per_1k_tokens is not None or offer.input_commitment is None:
            return None
        t = self.terms
        return PaymentRequirements(
            scheme=NAME, network=t.network, asset=to_checksum_address(t.asset), amount=str(offer.price_atomic),
            pay_to=to_checksum_address(t.market), max_timeout_seconds=t.max_timeout_s,
            extra={"name": t.token_name, "version": t.token_version, "modelId": str(offer.split),
                   "model": offer.model_id, "prover": to_checksum_address(t.prover)})

    def describe(self) -> dict[str, Any]:
        t = self.terms
        return {"x402": True, "scheme": NAME, "network": t.network, "asset": t.asset, "market": t.market,
                "prover": t.prover, "header": PAYMENT_SIGNATURE_HEADER,
                "charges": "proven calls of listed models: the chain verifies the proof before the payment moves",
                "min_validity_seconds": t.min_validity_s}

    # --- the port --------------------------------------------------------------------------------
    def accepts(self, headers: Mapping[str, str]) -> bool:
        return payload_of_scheme(headers.get(PAYMENT_SIGNATURE_HEADER), NAME) is not None

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        payload = payload_of_scheme(headers.get(PAYMENT_SIGNATURE_HEADER), NAME)
        if payload is None:
            return None
        try:
            payment = ProvenPayment.parse(payload.payload)
            model_id = bytes.fromhex(str((payload.accepted.extra or {}).get("modelId", "")).removeprefix("0x"))
            payment.check_signed(model_id, self.terms.prover, self._domain())
        except (ProofMarketError, ValueError):
            return None
        return payment.payer

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        payload = decode_payment(headers.get(PAYMENT_SIGNATURE_HEADER))
        requirements = self.requirements(offer)
        if requirements is None:
            raise PaymentMismatch("proven pays for proven models sold on their registry listing only: pay this call "
                                  "with exact", scheme=NAME, resource=offer.resource)
        try:
            payment = ProvenPayment.parse(payload.payload)
            check_resource(payload, offer.resource)
            self._check_terms(payload, requirements, payment, offer)
            check_window(payment.valid_before, payment.valid_after, self.terms.min_validity_s,
                         self.terms.max_timeout_s)
            model_id = bytes.fromhex(str(offer.split).removeprefix("0x"))
            payment.check_signed(model_id, self.terms.prover, self._domain())
            self._check_input(payment, offer)
        except PaymentError as exc:
            raise self._with_terms(exc, offer, requirements) from None
        key = f"proven:{payment.payer}:0x{payment.nonce.hex()}"
        if not self.attempts.reserve(key):
            raise PaymentReplayed("this payment was already accepted by this node", payer=payment.payer)
        try:
            if self.chain.authorization_used(payment.payer, payment.nonce):
                raise PaymentReplayed("this payment authorization was already used on chain (or canceled by its "
                                      "payer)", payer=payment.payer)
        except BaseException:
            self._drop(key)
            raise
        doc = {"payload": payload.model_dump(mode="json", by_alias=True),
               "requirements": requirements.model_dump(mode="json", by_alias=True), "resource": offer.resource,
               "model_id": str(offer.split)}
        return Ticket(nonce=key, amount_atomic=offer.price_atomic, payer=payment.payer, doc=doc)

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        """The payer's balance covers the authorized maximum (which moves whole, the rest returned) beside its
        other unsettled calls."""
        if not ticket.payer:
            return
        maximum = _payment(ticket).value
        balance = self.chain.balance(ticket.payer)
        if balance is not None and collectable.room(0, collectable.of_balance(balance, held_atomic)) < maximum:
            raise PaymentInsufficientFunds(
                "the payer's balance does not cover this call's authorized maximum on top of its other calls not "
                "settled yet", payer=ticket.payer, balance=str(balance), held=str(held_atomic),
                maximum=str(maximum))

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        self.attempts.sent(ticket.nonce)
        return self._paid(ticket, proof, self._send(ticket, proof))

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """A pending settlement: its transaction succeeded -> settled; the authorization used by another transaction
        (a resend, or one whose hash was lost) -> settled by that one when it succeeded; canceled by its payer, or
        unused past validBefore -> failed, nothing charged; unused and valid -> sent again."""
        mined = self.chain.succeeded(tx_hash) if tx_hash else None
        if mined:
            return self._paid(ticket, proof, str(tx_hash))
        payment = _payment(ticket)
        if self.chain.authorization_used(payment.payer, payment.nonce):
            found = self.chain.authorization_event(payment.payer, payment.nonce)
            if found is not None and found[0] == "canceled":
                self._drop(ticket.nonce)
                raise PaymentSettlementFailed("the payer canceled the authorization before its proof was settled; "
                                              "nothing was charged", reason="canceled", payer=ticket.payer)
            if found is not None and self.chain.succeeded(found[1]):
                return self._paid(ticket, proof, found[1])
            if tx_hash and mined is None:
                return None
            raise PaymentSettlementPending("the authorization is used on chain by a settlement this node cannot "
                                           "find yet", payer=ticket.payer, tx=tx_hash)
        if self.chain.now() > payment.valid_before:
            self._drop(ticket.nonce)
            raise PaymentSettlementFailed("the payment authorization expired before its proof was settled on chain; "
                                          "nothing was charged", reason="expired_unused", payer=ticket.payer)
        if not self.attempts.due(ticket.nonce):
            return None
        return self._paid(ticket, proof, self._send(ticket, proof))

    def release(self, ticket: Ticket) -> None:
        self._drop(ticket.nonce)

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        return payment_response_headers(settlement.payment, settlement.receipt, self.terms.network)

    # --- helpers ---------------------------------------------------------------------------------
    def _check_terms(self, payload: PaymentPayload, requirements: PaymentRequirements, payment: ProvenPayment,
                     offer: Offer) -> None:
        accepted = payload.accepted
        if payment.value < offer.price_atomic or int(accepted.amount) != offer.price_atomic:
            raise PaymentAmountMismatch(f"the payment authorizes at most {payment.value} units for a price of "
                                        f"{offer.price_atomic}", expected=str(offer.price_atomic),
                                        authorized=str(payment.value))
        extra = accepted.extra or {}
        mismatched = [name for name, ours, theirs in (
            ("scheme", requirements.scheme, accepted.scheme), ("network", requirements.network, accepted.network),
            ("asset", requirements.asset.lower(), accepted.asset.lower()),
            ("payTo", requirements.pay_to.lower(), accepted.pay_to.lower()),
            ("authorization.to", requirements.pay_to.lower(), payment.to.lower()),
            ("modelId", str(offer.split).lower(), str(extra.get("modelId", "")).lower()),
            ("prover", self.terms.prover.lower(), str(extra.get("prover", "")).lower())) if ours != theirs]
        if mismatched:
            raise PaymentMismatch(f"the payment does not match the required {', '.join(mismatched)}",
                                  fields=mismatched)

    def _check_input(self, payment: ProvenPayment, offer: Offer) -> None:
        assert offer.input_commitment is not None
        try:
            ours = offer.input_commitment()
        except ProofMarketError as exc:
            raise PaymentMismatch(f"the input commitment of this request cannot be computed: {exc.message}",
                                  fields=["inputCommitment"]) from exc
        if ours is None or ours.lower() != "0x" + payment.input_commitment.hex():
            raise PaymentMismatch("the payment commits to another input than this request's (inputCommitment): "
                                  "the proof could never settle it", fields=["inputCommitment"])

    def _domain(self) -> Any:
        from proofmarket.chain.eip3009 import TokenDomain

        t = self.terms
        return TokenDomain(t.token_name, t.token_version, t.chain_id, t.asset)

    def _send(self, ticket: Ticket, proof: ProofOutcome) -> str:
        payment = _payment(ticket)
        model_id = bytes.fromhex(str(ticket.doc["model_id"]).removeprefix("0x"))
        try:
            return self.chain.fulfill(payment, model_id, proof.model_id, proof.bundle)
        except ContractReverted as exc:
            # refused because an earlier send (a retry, a run before a restart) used it, or the payer canceled it:
            # follow finds which, and never calls a charged call uncharged
            if self.chain.authorization_used(payment.payer, payment.nonce):
                raise PaymentSettlementPending("the settlement was refused because the authorization is already "
                                               "used: following the transaction that used it",
                                               payer=ticket.payer) from exc
            self._drop(ticket.nonce)
            raise PaymentSettlementFailed(f"the market refused the settlement ({exc.message}); nothing was charged",
                                          reason="refused", payer=ticket.payer) from exc
        except ProofMarketError as exc:
            raise PaymentSettlementPending(f"the settlement's outcome is unknown ({exc.message}); following the "
                                           "authorization on chain", payer=ticket.payer) from exc

    def _paid(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str) -> Settlement:
        self._drop(ticket.nonce)
        payment = _payment(ticket)
        return captured(self.node, self.store, self.name, f"proven:{ticket.nonce}", ticket, proof, scheme=NAME,
                        network=self.terms.network, asset=self.terms.asset, payer=payment.payer,
                        pay_to=to_checksum_address(self.terms.market), amount=ticket.amount_atomic, tx_hash=tx_hash,
                        extra={"authorized": str(payment.value), "verified_on_chain": True})

    def _drop(self, key: str) -> None:
        self.attempts.drop(key)


def _payment(ticket: Ticket) -> ProvenPayment:
    return ProvenPayment.parse(dict(ticket.doc["payload"]["payload"]))


__all__ = ["NAME", "ProvenChain", "ProvenRail", "ProvenTerms"]
