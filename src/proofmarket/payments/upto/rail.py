"""The ``upto`` rail: x402's ``upto`` scheme (authorize a maximum, settle what was used) for metered calls.

    402 terms   a metered offer (a generation: a rate per 1,000 output tokens, its ceiling at max_tokens) lists
                ``upto`` first, before ``exact`` (``X402Payments.also_accept(first=True)``): an x402 client that
                registered the upto scheme pays with it, one that did not pays the ceiling with exact. The payer
                signs a Permit2 witness transfer of at most the ceiling to the payee, which only the node's
                facilitator may settle (``facilitatorAddress``), through x402's upto proxy
    verify      the terms (scheme, network, asset, payee, the ceiling, the resource), the deadline (at least the
                node's minimum validity), then the facilitator's verify (signature, Permit2 allowance, balance, a
                simulated settlement); the authorization is reserved (one call per Permit2 nonce)
    cover       the payer's token balance covers the ceiling beside its other unsettled calls
    settle      the facilitator moves ``ticket.used(outcome)``: the tokens the generation produced at the rate
                (never above the ceiling); the receipt and the book name that amount
    release     the call failed: nothing is settled; the signed authorization expires at its deadline unused
A settlement left pending is followed on chain: the transaction's receipt, else the Permit2 nonce (used: the hold stays
until the transfer is found; unused past the deadline: failed, nothing charged; unused and valid: sent again, which the
nonce makes safe). The payer approves Permit2 for the token once (``chain/permit2.py``, ``approve_permit2``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from x402 import x402ResourceServerSync
from x402.http import FacilitatorClientSync
from x402.mechanisms.evm import constants as evm
from x402.mechanisms.evm.types import UptoPermit2Payload
from x402.mechanisms.evm.upto.server import UptoEvmScheme
from x402.schemas import AssetAmount, PaymentPayload, PaymentRequirements, ResourceConfig, SchemeNotFoundError

from proofmarket.core.errors import (
    FacilitatorUnavailable,
    PaymentAllowanceRequired,
    PaymentError,
    PaymentExpired,
    PaymentInsufficientFunds,
    PaymentMalformed,
    PaymentMismatch,
    PaymentNotYetValid,
    PaymentRejected,
    PaymentReplayed,
    PaymentSettlementFailed,
    PaymentSettlementPending,
    PaymentSignatureInvalid,
)
from proofmarket.payments import collectable
from proofmarket.payments.attempts import Attempts
from proofmarket.payments.captures import captured
from proofmarket.payments.facilitators import chain_id_of, facilitator_call
from proofmarket.payments.headers import PAYMENT_SIGNATURE_HEADER, payment_response_headers
from proofmarket.payments.parse import (
    check_resource,
    check_terms,
    check_window,
    decode_payment,
    payload_of_scheme,
)
from proofmarket.payments.port import Offer, RailExtras
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.store import ArtifactStore

log = logging.getLogger(__name__)
NAME = "upto"
_REFUSALS: dict[str, type[PaymentRejected]] = {
    evm.ERR_PERMIT2_ALLOWANCE_REQUIRED: PaymentAllowanceRequired,
    evm.ERR_PERMIT2_INSUFFICIENT_BALANCE: PaymentInsufficientFunds,
    evm.ERR_PERMIT2_INVALID_SIGNATURE: PaymentSignatureInvalid,
    evm.ERR_PERMIT2_DEADLINE_EXPIRED: PaymentExpired,
    evm.ERR_PERMIT2_NOT_YET_VALID: PaymentNotYetValid,
    evm.ERR_PERMIT2_INVALID_SPENDER: PaymentMismatch,
    evm.ERR_PERMIT2_RECIPIENT_MISMATCH: PaymentMismatch,
    evm.ERR_PERMIT2_TOKEN_MISMATCH: PaymentMismatch,
    evm.ERR_UPTO_FACILITATOR_MISMATCH: PaymentMismatch,
    "permit2_invalid_nonce": PaymentReplayed,
}


@dataclass(frozen=True)
class UptoTerms:
    """The node's upto terms: its chain, token (and EIP-712 domain), the validity a call needs, the terms' timeout."""

    network: str
    asset: str
    token_name: str
    token_version: str
    min_validity_s: int
    max_timeout_s: int


class UptoChain(Protocol):
    """What the rail reads on chain: a payer's token balance, a Permit2 nonce, a receipt, the chain's time."""

    def balance(self, account: str) -> int | None: ...

    def nonce_used(self, owner: str, nonce: int) -> bool: ...

    def succeeded(self, tx_hash: str) -> bool | None:
        """True: mined and succeeded; False: mined and reverted; None: not mined (or unknown)."""
        ...

    def now(self) -> int: ...


class UptoRail(RailExtras):
    name = NAME

    def __init__(self, terms: UptoTerms, facilitator: FacilitatorClientSync, chain: UptoChain, node: LocalAccount,
                 store: ArtifactStore, pay_to: Callable[[Offer], str],
                 with_terms: Callable[[PaymentError, Offer, PaymentRequirements], PaymentError],
                 resend_after_s: float = 240.0) -> None:
        self.terms, self.facilitator, self.chain, self.node, self.store = terms, facilitator, chain, node, store
        self._pay_to, self._with_terms = pay_to, with_terms
        self.attempts = Attempts(resend_after_s)
        self._server = x402ResourceServerSync(facilitator)
        self._server.register(terms.network, UptoEvmScheme())  # type: ignore[arg-type,no-untyped-call]
        self._ready = False
        self._lock = threading.Lock()

    # --- terms -----------------------------------------------------------------------------------
    def requirements(self, offer: Offer) -> PaymentRequirements | None:
        """The upto terms of a metered offer (None for any other, or while the facilitator serves no upto)."""
        if offer.per_1k_tokens is None:
            return None
        try:
            return self._requirements(offer)
        except FacilitatorUnavailable:
            return None

    def _requirements(self, offer: Offer) -> PaymentRequirements:
        t = self.terms
        with self._lock:
            if not self._ready:
                try:
                    self._server.initialize()
                except Exception as exc:
                    raise FacilitatorUnavailable(f"the facilitator did not answer /supported: {exc}") from exc
                self._ready = True
        price = AssetAmount(amount=str(offer.price_atomic), asset=to_checksum_address(t.asset),
                            extra={"name": t.token_name, "version": t.token_version})
        config = ResourceConfig(scheme=NAME, network=t.network, pay_to=self._pay_to(offer), price=price,
                                max_timeout_seconds=t.max_timeout_s)
        try:
            return self._server.build_payment_requirements(config)[0]
        except (SchemeNotFoundError, ValueError) as exc:
            raise FacilitatorUnavailable(f"the facilitator does not settle upto on {t.network}: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        t = self.terms
        return {"x402": True, "scheme": NAME, "network": t.network, "asset": t.asset,
                "header": PAYMENT_SIGNATURE_HEADER,
                "permit2": evm.PERMIT2_ADDRESS, "proxy": evm.X402_UPTO_PERMIT2_PROXY_ADDRESS,
                "charges": "metered calls (generation): the output tokens produced at the rate, at most the ceiling",
                "min_validity_seconds": t.min_validity_s}

    # --- the port --------------------------------------------------------------------------------
    def accepts(self, headers: Mapping[str, str]) -> bool:
        return payload_of_scheme(headers.get(PAYMENT_SIGNATURE_HEADER), NAME) is not None

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        return signed_payer(headers.get(PAYMENT_SIGNATURE_HEADER))

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        payload = decode_payment(headers.get(PAYMENT_SIGNATURE_HEADER))
        if offer.per_1k_tokens is None:
            raise PaymentMismatch("upto pays for metered calls (generation) only: pay this call with exact",
                                  scheme=NAME, resource=offer.resource)
        requirements = self._requirements(offer)
        try:
            permit = _authorization(payload)
            check_resource(payload, offer.resource)
            check_terms(payload, requirements, self._server.find_matching_requirements([requirements], payload),
                        signed=(permit.permitted.amount, permit.witness.to))
            check_window(int(permit.deadline), int(permit.witness.valid_after), self.terms.min_validity_s,
                         self.terms.max_timeout_s)
        except PaymentError as exc:
            raise self._with_terms(exc, offer, requirements) from None
        payer = to_checksum_address(permit.from_address)
        key = f"upto:{payer}:{int(permit.nonce)}"
        if not self.attempts.reserve(key):
            raise PaymentReplayed("this payment was already accepted by this node", payer=payer,
                                  nonce=str(permit.nonce))
        try:
            if self.chain.nonce_used(payer, int(permit.nonce)):
                raise PaymentReplayed("this payment authorization was already used on chain (or given up by its "
                                      "payer)", payer=payer, nonce=str(permit.nonce))
            with facilitator_call("verify"):
                result = self._server.verify_payment(payload, requirements).verify
            if not result.is_valid:
                reason = str(result.invalid_reason or "")
                raise self._with_terms(_refusal(reason, payer), offer, requirements)
        except BaseException:
            self._drop(key)
            raise
        doc = {"payload": payload.model_dump(mode="json", by_alias=True),
               "requirements": requirements.model_dump(mode="json", by_alias=True), "resource": offer.resource}
        if offer.split:
            doc["split"] = offer.split
        return Ticket(nonce=key, amount_atomic=offer.price_atomic, payer=payer, doc=doc,
                      per_1k_tokens=offer.per_1k_tokens)

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        """The payer's balance read now covers this call's ceiling beside its other unsettled calls."""
        if not ticket.payer:
            return
        balance = self.chain.balance(ticket.payer)
        if balance is not None and collectable.room(0, collectable.of_balance(balance, held_atomic)) \
                < ticket.amount_atomic:
            raise PaymentInsufficientFunds(
                "the payer's balance does not cover this call's maximum on top of its other calls not settled yet",
                payer=ticket.payer, balance=str(balance), held=str(held_atomic), price=str(ticket.amount_atomic))

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        self.attempts.sent(ticket.nonce)
        return self._paid(ticket, proof, self._send(ticket, proof))

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """A pending settlement: its transaction succeeded -> settled; the nonce unused past the deadline -> failed
        (nothing charged); unused and valid -> sent again every ``resend_after_s`` (the nonce moves money once)."""
        mined = self.chain.succeeded(tx_hash) if tx_hash else None  # one receipt read a pass
        if mined:
            return self._paid(ticket, proof, str(tx_hash))
        payload, _ = _stored(ticket)
        permit = _authorization(payload)
        if self.chain.nonce_used(str(permit.from_address), int(permit.nonce)):
            if tx_hash and mined is None:
                return None  # still being mined
            raise PaymentSettlementPending("the authorization is used on chain by a transfer this node cannot find "
                                           "yet", payer=ticket.payer, tx=tx_hash)
        if self.chain.now() > int(permit.deadline):
            self._drop(ticket.nonce)
            raise PaymentSettlementFailed("the payment authorization expired before it was settled; nothing was "
                                          "charged", reason="expired_unused", payer=ticket.payer)
        if not self.attempts.due(ticket.nonce):
            return None
        return self._paid(ticket, proof, self._send(ticket, proof))

    def release(self, ticket: Ticket) -> None:
        self._drop(ticket.nonce)

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        return payment_response_headers(settlement.payment, settlement.receipt, self.terms.network)

    # --- helpers ---------------------------------------------------------------------------------
    def _send(self, ticket: Ticket, proof: ProofOutcome) -> str:
        """Settle what the call used; the transaction hash ("" for nothing to move). Pending and failure raise."""
        payload, requirements = _stored(ticket)
        used = ticket.used(proof)
        final = requirements.model_copy(update={"amount": str(used)})
        try:
            with facilitator_call("settle"):
                result = self._server.settle_payment(payload, final)
        except FacilitatorUnavailable as exc:
            raise PaymentSettlementPending(f"the settlement's outcome is unknown ({exc.message}); following the "
                                           "authorization on chain", payer=ticket.payer) from exc
        if result.success:
            return str(result.transaction or "")
        reason = str(result.error_reason or "")
        if reason == evm.ERR_SETTLEMENT_PENDING or (reason == evm.ERR_UPTO_TRANSACTION_FAILED
                                                    and not result.transaction):
            raise PaymentSettlementPending("the settlement is not confirmed yet; following the authorization on chain",
                                           payer=ticket.payer, tx=result.transaction or None)
        self._drop(ticket.nonce)
        raise PaymentSettlementFailed(f"the payment could not be settled ({reason}); nothing was charged",
                                      reason=reason, payer=ticket.payer, tx=result.transaction or None)

    def _paid(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str) -> Settlement:
        self._drop(ticket.nonce)
        _, requirements = _stored(ticket)
        extra: dict[str, Any] = {"authorized": str(ticket.amount_atomic)}
        if proof.tokens is not None:
            extra["tokens"] = proof.tokens
        return captured(self.node, self.store, self.name, f"upto:{ticket.nonce}", ticket, proof, scheme=NAME,
                        network=self.terms.network, asset=requirements.asset, payer=str(ticket.payer),
                        pay_to=to_checksum_address(requirements.pay_to), amount=ticket.used(proof), tx_hash=tx_hash,
                        extra=extra)

    def _drop(self, key: str) -> None:
        self.attempts.drop(key)


def _refusal(reason: str, payer: str) -> PaymentError:
    kind = _REFUSALS.get(reason, PaymentRejected)
    if kind is PaymentAllowanceRequired:
        return kind(f"the payer has not approved Permit2 ({evm.PERMIT2_ADDRESS}) for this token: approve it once "
                    "('proofmarket permit2 approve'), or pay with exact", reason=reason, payer=payer)
    return kind(f"the facilitator refused the upto payment ({reason or 'no reason given'})", reason=reason,
                payer=payer)


def _authorization(payload: PaymentPayload) -> Any:
    try:
        return UptoPermit2Payload.from_dict(payload.payload).permit2_authorization
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PaymentMalformed(f"the upto payment has no well-formed Permit2 authorization: {exc}") from exc


def _stored(ticket: Ticket) -> tuple[PaymentPayload, PaymentRequirements]:
    return (PaymentPayload.model_validate(ticket.doc["payload"]),
            PaymentRequirements.model_validate(ticket.doc["requirements"]))


@functools.lru_cache(maxsize=256)
def signed_payer(header: str | None) -> str | None:
    """The payer whose own (EOA) signature is on this upto payment, checksummed; None otherwise. No RPC."""
    payload = payload_of_scheme(header, NAME)
    if payload is None:
        return None
    try:
        signed = UptoPermit2Payload.from_dict(payload.payload)
        auth = signed.permit2_authorization
        message = {"permitted": {"token": auth.permitted.token, "amount": int(auth.permitted.amount)},
                   "spender": auth.spender, "nonce": int(auth.nonce), "deadline": int(auth.deadline),
                   "witness": {"to": auth.witness.to, "facilitator": auth.witness.facilitator,
                               "validAfter": int(auth.witness.valid_after)}}
        domain = {"name": "Permit2", "chainId": chain_id_of(str(payload.accepted.network)),
                  "verifyingContract": evm.PERMIT2_ADDRESS}
        types = {k: list(v) for k, v in evm.UPTO_PERMIT2_WITNESS_TYPES.items()}
        signable = encode_typed_data(domain_data=domain, message_types=types, message_data=message)
        recovered = Account.recover_message(signable, signature=bytes.fromhex(str(signed.signature)[2:]))
    except Exception:
        return None
    payer = to_checksum_address(auth.from_address)
    return payer if recovered == payer else None


__all__ = ["NAME", "UptoChain", "UptoRail", "UptoTerms", "signed_payer"]
