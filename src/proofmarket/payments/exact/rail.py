"""The real ``Rail``: x402 ``exact`` (EIP-3009 USDC) through :class:`proofmarket.payments.exact.gate.PaymentGate`.

    verify(headers, offer)   no PAYMENT-SIGNATURE -> 402 payment_required + PAYMENT-REQUIRED (bazaar
                             discovery of the infer route included); a bad one -> its PaymentError
                             (402 / 409 replayed), PAYMENT-REQUIRED attached so an x402 client can retry;
                             a good one is reserved (not settled) and becomes the job's Ticket
    settle(ticket, proof)    after the proof is ready and self-verified: settle once on chain, sign the
                             node's EIP-712 receipt (payment tx, model id, input commitment, output hash,
                             bundle CID), store the "paid bundle" and answer payment + receipt +
                             PAYMENT-RESPONSE (receipt in its extensions)
    release(ticket)          the proof failed: the reservation goes, nothing is charged

The bundle: the proof bundle stored under ``bundle_cid`` stays pure (its CID is computed before any
payment, and the receipt signs that CID). After settlement the node also stores a *paid bundle*: the same
document with ``payment`` and ``receipt`` filled in; its CID is ``payment.paid_bundle_cid``
(``GET /v1/proofs/{cid}`` serves it). ``verify_bundle`` checks the proof of either, and the receipt when
one is present (signature, and that it binds the bundle's model id, input commitment, output hash and
the CID of the pure bundle).

Configuration (environment, prefix ``PROOFMARKET_``, besides ``Settings``):

    RPC_URL            the chain; unset = the devnet of ``proofmarket chain up`` (started here if none runs)
    NODE_KEY           the node's key: signs receipts (and settlements with the in-process facilitator);
                       on the devnet a dev account by default
    PAYEE              where calls are paid when the model row has no owner; devnet default: dev owner
    FACILITATOR_URL    a remote x402 facilitator (e.g. ``proofmarket facilitator serve``); unset = in-process
                       facilitator (the node key pays gas). Its /supported is asked at start-up: a facilitator
                       that answers without exact on the node's network stops the node (a usage error); one
                       that does not answer yet is only logged (paid calls are refused 503 until it does)
    FACILITATOR_TIMEOUT_S   each request to the remote facilitator gives up after this long
    USDC_ADDRESS       the USDC token; unset = the market deployment's (the devnet deploys TestUSDC)
    PAYMENT_MIN_VALIDITY_S  an authorization must stay valid this long (queue + proof + settlement)
    PAYMENT_MAX_TIMEOUT_S   maxTimeoutSeconds of the terms (above the minimum)
    FACILITATOR_WAIT_S      how long the in-process facilitator waits for a receipt; a settlement still
                            pending then leaves the job ``settling`` (followed on chain, hold kept)

Off loopback (``PROOFMARKET_API_HOST``), ``PROOFMARKET_PUBLIC_URL`` is required: the paid resource URL (signed
into receipts) never comes from the request's Host header.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from x402.schemas import PaymentRequirements

from proofmarket.core.errors import (
    FacilitatorUnavailable,
    PaymentError,
    PaymentInsufficientFunds,
    PaymentRequired,
    PaymentSettlementFailed,
    PaymentSettlementPending,
    UsageError,
)
from proofmarket.core.settings import Settings, X402Settings
from proofmarket.payments import collectable
from proofmarket.payments.captures import captured
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.facilitators import check_supported, network_id, remote_facilitator
from proofmarket.payments.headers import (
    INFER_INPUT_SCHEMA,
    INFER_OUTPUT_SCHEMA,
    INFER_ROUTE_TEMPLATE,
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    Discovery,
    payment_response_headers,
)
from proofmarket.payments.onchain import NodeChain, usdc_domain
from proofmarket.payments.port import Offer, RailExtras
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.payments.types import PaidOnChain, VerifiedPayment
from proofmarket.store import ArtifactStore

log = logging.getLogger(__name__)

MAX_CACHED_TERMS = 1024  # offers whose 402 terms are kept (models x prices x payees x resources)


class X402Payments(RailExtras):
    """``Rail`` over a ``PaymentGate``. ``pay_to(model_id)`` names the payee of a model (its owner).

    ``resend_after_s``: a settlement left pending without a transaction (the facilitator could not be reached,
    or its answer was lost) is sent again by ``follow`` once this long has passed since the last attempt and
    the authorization is still unused and valid on chain. EIP-3009 lets an authorization move the money once,
    so a second send can waste gas (a transaction still in a mempool), never charge twice."""

    def __init__(self, gate: PaymentGate, node: LocalAccount, store: ArtifactStore,
                 pay_to: Callable[[str], str | None], default_payee: str, chain_id: int | None = None,
                 resend_after_s: float = 240.0) -> None:
        self.gate, self.node, self.store = gate, node, store
        self._pay_to, self.default_payee, self.chain_id = pay_to, to_checksum_address(default_payee), chain_id
        self.resend_after_s = resend_after_s
        self._attempts: dict[str, float] = {}  # payment key -> monotonic time of its last settlement attempt
        # other schemes' terms (also_accept): each with whether it goes before exact's
        self._also: list[tuple[Callable[[Offer], PaymentRequirements | None], bool]] = []
        self._terms: dict[Offer, str] = {}  # PAYMENT-REQUIRED of an unpaid request, per offer

    name = "x402"

    # --- Rail -----------------------------------------------------------------------------
    def accepts(self, headers: Mapping[str, str]) -> bool:
        return bool(headers.get(PAYMENT_SIGNATURE_HEADER) or headers.get("X-PAYMENT"))

    def describe(self) -> dict[str, Any]:
        return {"x402": True, "x402_version": 2, "scheme": "exact", "network": self.gate.network,
                "asset": self.gate.asset, "chain": {"chain_id": self.chain_id},
                "receipt_signer": self.node.address, "header": PAYMENT_SIGNATURE_HEADER,
                "min_validity_seconds": self.gate.min_validity_seconds,
                "max_timeout_seconds": self.gate.max_timeout_seconds}

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        signature = headers.get(PAYMENT_SIGNATURE_HEADER)
        if not signature:  # the 402 every x402 client asks for first: its terms are built once per offer
            err: PaymentError = PaymentRequired(
                f"this call costs {offer.price_atomic} atomic USDC units: pay over x402 (exact, {self.gate.network}) "
                f"with an authorization valid for at least {self.gate.min_validity_seconds} s",
                price_atomic=str(offer.price_atomic), asset=self.gate.asset, network=self.gate.network,
                min_validity_seconds=self.gate.min_validity_seconds)
            err.headers = {PAYMENT_REQUIRED_HEADER: self._terms_of(offer)}
            raise err
        requirements = self.gate.requirements(offer.price_atomic, self.pay_to_of(offer))
        try:
            verified = self.gate.verify(signature, requirements, resource_url=offer.resource)
        except PaymentError as exc:
            raise self._with_terms(exc, requirements, offer) from None
        doc = verified.to_json()
        doc["resource"] = offer.resource
        if offer.split:
            doc["split"] = offer.split
        return Ticket(nonce=verified.key, amount_atomic=verified.amount, payer=verified.payer, doc=doc,
                      per_1k_tokens=offer.per_1k_tokens)

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        return self.gate.signed_payer(headers.get(PAYMENT_SIGNATURE_HEADER))

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        """The payer's balance read now covers this call beside its other unsettled ones. Read even when nothing
        else is held: the facilitator's verify simulated this transfer on the balance of *then*, and another call
        of the same payer may have settled between that simulation and this check (its hold gone, the balance
        down): trusting the simulation let both calls prove and one fail to settle."""
        if not ticket.payer:
            return
        balance = self.gate.balance(ticket.payer)
        if balance is not None and collectable.room(0, collectable.of_balance(balance, held_atomic)) \
                < ticket.amount_atomic:
            err = PaymentInsufficientFunds(
                "the payer's balance does not cover this call on top of its other calls not settled yet",
                payer=ticket.payer, balance=str(balance), held=str(held_atomic), price=str(ticket.amount_atomic))
            verified = VerifiedPayment.from_json(ticket.doc)  # the same terms, for an x402 client
            header = self.gate.payment_required_header(verified.requirements, str(ticket.doc.get("resource", "")),
                                                       error=err.code)
            err.headers = {PAYMENT_REQUIRED_HEADER: header}
            raise err

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        verified = self._reserved(ticket)
        self._attempts[verified.key] = time.monotonic()
        try:
            settled = self.gate.settle(verified)  # at most once
        except PaymentSettlementPending:
            raise  # the attempt's time stays: ``follow`` sends again when no transaction is known
        except BaseException:
            self._attempts.pop(verified.key, None)
            raise
        self._attempts.pop(verified.key, None)
        return self._paid(ticket, proof, verified, settled)

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """The settlement once the authorization is used on chain (and deep enough); None while it is not. A
        settlement whose transaction nobody knows (``tx_hash`` None: the facilitator was down or its answer lost)
        or whose transaction is gone from the chain (its block orphaned by a reorg, or dropped unmined) is sent
        again every ``resend_after_s``: an authorization nobody sends would expire with the call's result. The
        token moves the money of one authorization once at most, so a second send never charges twice."""
        verified = self._reserved(ticket)
        settled = self.follow_payment(verified, tx_hash)
        return None if settled is None else self._paid(ticket, proof, verified, settled)

    def follow_payment(self, verified: VerifiedPayment, tx_hash: str | None) -> PaidOnChain | None:
        """The one way a pending exact settlement is followed (a call's, a purchase's): its settlement once the
        authorization is used on chain (and deep enough), None while it is not, re-sent when lost (see ``follow``),
        ``PaymentSettlementFailed`` once it expired unused or was canceled."""
        if self.gate.ledger.get(verified.key) is None:  # a restart forgot the reservation: take it again
            self.gate.ledger.reserve(verified)
        try:
            settled = self.gate.follow(verified, tx_hash)
            # never known, or orphaned / dropped
            lost = settled is None and (tx_hash is None or self.gate.vanished(tx_hash))
            if lost and self._resend_due(verified.key):
                log.info("resending the settlement of %s: %s", verified.key, "no transaction is known for it"
                         if tx_hash is None else f"its transaction {tx_hash} is gone from the chain")
                self._attempts[verified.key] = time.monotonic()
                settled = self.gate.settle(verified)
        except PaymentSettlementFailed:
            self._attempts.pop(verified.key, None)
            raise
        if settled is not None:
            self._attempts.pop(verified.key, None)
        return settled

    def _resend_due(self, key: str) -> bool:
        """True once ``resend_after_s`` passed since the last attempt; the first look (a restarted node) starts
        the clock instead, so that a transaction sent just before a restart gets its time to be mined."""
        now = time.monotonic()
        last = self._attempts.setdefault(key, now)
        return now - last >= self.resend_after_s

    def _reserved(self, ticket: Ticket) -> VerifiedPayment:
        verified = VerifiedPayment.from_json(ticket.doc)
        if self.gate.ledger.get(verified.key) is None:  # a restart forgot the reservation: take it again
            self.gate.ledger.reserve(verified)
        return verified

    def _paid(self, ticket: Ticket, proof: ProofOutcome, verified: VerifiedPayment,
              settled: PaidOnChain) -> Settlement:
        # the payer paid the payee on chain: the book records it with the call's state change
        return captured(self.node, self.store, self.name, f"x402:{verified.key}", ticket, proof, scheme="exact",
                        network=settled.network, asset=verified.asset, payer=settled.payer, pay_to=verified.pay_to,
                        amount=settled.amount, tx_hash=settled.tx_hash)

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        """PAYMENT-RESPONSE of a settled call, rebuilt from its payment and receipt (never stored)."""
        return payment_response_headers(settlement.payment, settlement.receipt, self.gate.network)

    def release(self, ticket: Ticket) -> None:
        self.gate.release(VerifiedPayment.from_json(ticket.doc))

    def close(self) -> None:
        """Close the remote facilitator's HTTP client (nothing to close with the in-process one)."""
        self.gate.close()

    # --- helpers ---------------------------------------------------------------------------------
    def pay_to_of(self, offer: Offer) -> str:
        """Where a call of ``offer`` is paid: its listing's splitter, else the model's owner, else the payee."""
        return to_checksum_address(offer.pay_to) if offer.pay_to else self.payee_of(offer.model_id)

    def payee_of(self, model_id: str) -> str:
        owner = self._pay_to(model_id)
        return to_checksum_address(owner) if owner and is_address(owner) else self.default_payee

    def also_accept(self, terms: Callable[[Offer], PaymentRequirements | None], *, first: bool = False) -> None:
        """Another x402 scheme this node takes: its terms go in every 402 (of the offers it answers for: ``terms``
        returns None for the others) after exact's (``batch-settlement``), or before them when ``first`` (``upto``
        for metered offers: a client that pays with it picks it, the others fall back on exact)."""
        self._also.append((terms, first))
        self._terms.clear()

    def with_terms(self, err: PaymentError, offer: Offer, replace: PaymentRequirements) -> PaymentError:
        """``err`` with the 402 of ``offer`` whose terms of ``replace``'s scheme are ``replace`` (a corrective 402
        carrying a channel's state)."""
        exact = self.gate.requirements(offer.price_atomic, self.pay_to_of(offer))
        return self._with_terms(err, exact, offer, replace)

    def _terms_of(self, offer: Offer) -> str:
        """PAYMENT-REQUIRED of ``offer`` for a request that carries no payment, kept per offer (an offer names the
        model, price, payee and resource: the same offer has the same terms)."""
        header = self._terms.get(offer)
        if header is None:
            requirements = self.gate.requirements(offer.price_atomic, self.pay_to_of(offer))
            header = self._with_terms(PaymentRequired("payment required"), requirements, offer).headers[
                PAYMENT_REQUIRED_HEADER]
            if len(self._terms) >= MAX_CACHED_TERMS:
                self._terms.clear()
            self._terms[offer] = header
        return header

    def _with_terms(self, err: PaymentError, requirements: Any, offer: Offer,
                    replace: PaymentRequirements | None = None) -> PaymentError:
        """Attach PAYMENT-REQUIRED so that an x402 client knows how to pay (or pay again): exact's terms, then the
        other schemes' (``also_accept``)."""
        before: list[PaymentRequirements] = []
        after: list[PaymentRequirements] = []
        for terms, first in self._also:
            more = terms(offer)
            if more is not None:
                (before if first else after).append(
                    replace if replace is not None and replace.scheme == more.scheme else more)
        accepts = [*before, requirements, *after]
        reason = err.details.get("reason")
        header = self.gate.payment_required_header(
            accepts, offer.resource,
            description=f"{offer.description}; sign an authorization valid for at least "
                        f"{self.gate.min_validity_seconds} s (queue, proof and settlement); the model, as its owner "
                        f"names it: {json.dumps(offer.model_name[:80])}",  # the owner's words last, quoted
            mime_type=offer.mime_type, error=str(reason) if isinstance(reason, str) else err.code,
            discovery=discovery(json.loads(offer.verifiable) if offer.verifiable else None))
        err.headers = {PAYMENT_REQUIRED_HEADER: header}
        return err


def discovery(verifiable: dict[str, Any] | None = None) -> Discovery:
    """Bazaar metadata of the infer route: what goes in, what comes out, and what the answer guarantees
    (``info.verifiable``: guarantee, proof format, model id, verifier; ``ServedModel.verifiable``)."""
    example = {"job_id": "...", "output": [[0.0]], "bundle_cid": "bafkrei...", "bundle": {}, "payment": {},
               "receipt": {}}
    return Discovery(method="POST", input_example={"input_data": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]},
                     input_schema=INFER_INPUT_SCHEMA, output_example=example, output_schema=INFER_OUTPUT_SCHEMA,
                     body_type="json", route_template=INFER_ROUTE_TEMPLATE, verifiable=verifiable)


def check_window(extra: X402Settings) -> None:
    if extra.payment_min_validity_s >= extra.payment_max_timeout_s:
        raise UsageError(f"PROOFMARKET_PAYMENT_MIN_VALIDITY_S ({extra.payment_min_validity_s}) must be below "
                         f"PROOFMARKET_PAYMENT_MAX_TIMEOUT_S ({extra.payment_max_timeout_s}): clients sign "
                         "validBefore = now + maxTimeoutSeconds")


def build_x402(chain: NodeChain, store: ArtifactStore, pay_to: Callable[[str], str | None],
               extra: X402Settings) -> X402Payments:
    """The x402 rail on ``chain`` (the node's client, USDC and accounts: ``node.chain_setup.node_chain``)."""
    chain_id = chain.client.chain_id
    window: dict[str, Any] = {"max_timeout_seconds": extra.payment_max_timeout_s,
                              "min_validity_seconds": extra.payment_min_validity_s}
    window["token_name"], window["token_version"] = usdc_domain(chain.client, chain.usdc)
    if extra.facilitator_url:
        gate = _remote_gate(extra.facilitator_url, network_id(chain_id), chain, extra)
        resend_after_s = 2 * extra.facilitator_timeout_s
    else:
        gate = PaymentGate.local(rpc_url=chain.rpc_url, signer=chain.facilitator, asset=chain.usdc,
                                 chain=chain.client, confirmation_timeout_seconds=extra.facilitator_wait_s, **window)
        resend_after_s = 2 * extra.facilitator_wait_s
    return X402Payments(gate, chain.node, store, pay_to, chain.payee, chain_id, resend_after_s=resend_after_s)


def _remote_gate(url: str, network: str, chain: NodeChain, extra: X402Settings) -> PaymentGate:
    """The gate over a facilitator service, its ``/supported`` checked for exact on ``network`` (see the module)."""
    token = extra.facilitator_token.get_secret_value() if extra.facilitator_token else None
    facilitator = remote_facilitator(url, timeout=extra.facilitator_timeout_s, token=token)
    try:
        check_supported(facilitator, network, url)
    except FacilitatorUnavailable as exc:
        log.warning("%s; paid calls are refused (503 facilitator_unavailable) until it answers", exc.message)
    except BaseException:
        facilitator.close()
        raise
    name, version = usdc_domain(chain.client, chain.usdc)
    return PaymentGate(facilitator, network=network, asset=chain.usdc, chain=chain.client,
                       max_timeout_seconds=extra.payment_max_timeout_s,
                       min_validity_seconds=extra.payment_min_validity_s, token_name=name, token_version=version)


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def check_public_url(settings: Settings, dev_chain: bool = True) -> None:
    """Off loopback the resource URL signed into receipts must not come from the request's Host header; off a
    development chain sign-in (SIWE) is bound to the node's public URL, never to a Host header or a socket."""
    if not settings.api.public_url and not is_loopback(settings.api.api_host):
        raise UsageError(f"the node listens on {settings.api.api_host}, not loopback: set PROOFMARKET_PUBLIC_URL (the "
                         "URL clients reach it at; it is signed into payment receipts) to take payments",
                         api_host=settings.api.api_host)
    if not settings.api.public_url and not dev_chain:
        raise UsageError("this node serves signed routes off a development chain: set PROOFMARKET_PUBLIC_URL (the "
                         "https URL clients reach it at), which its Sign-In with Ethereum messages must name",
                         variable="PROOFMARKET_PUBLIC_URL")


__all__ = ["NodeChain", "X402Payments", "X402Settings", "build_x402", "check_public_url", "check_window",
           "discovery"]
