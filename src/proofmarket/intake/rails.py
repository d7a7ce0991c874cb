"""Escrow and the court as payment rails: a request paid on chain and answered by the node is a call on the
``escrow`` or ``court`` rail, settled by the node's one call settler like a call of any other rail.

    escrow (InferenceMarket)
      RequestCreated + input posted -> the watcher claims the request and accepts it as a call (``chain_ticket``: the
                                       request and this attempt; the price is escrowed on chain: nothing is held)
      the engine runs it               (a proof of the node's queue; an attested generation; a bundle proved before)
      the call settler: settle      -> ``fulfill`` on chain (``EscrowService.settle_answer``): the request's row and
                                       its book entry move with it; without confirmations the call is settled, with
                                       them ``settling`` until its block is deep enough (``follow``)
    court (AttestationCourt)
      RequestCreated + input posted -> claimed and queued as a call (``submit_request``): the engine's attested
                                       system generates and signs it
      the call settler: settle      -> ``commit`` (``commitBatch`` with the other answers waiting: one Merkle root;
                                       while others are still being generated, the last of them commits them all),
                                       then pending: the money waits for the challenge window
                      follow        -> ``advance``: publish when challenged as withheld, finalize after the window,
                                       resolve after a vote, each move booked with the row; settled once the court
                                       paid, failed when slashed or refunded

A request closed meanwhile fails its call with the request's reason (nothing charged: the consumer's escrow is
refunded on chain). Requests whose calls share one proof are fulfilled together by the settlement of the first of
them (one ``fulfillBatch``, ``escrow_batch.py``). A watcher run outside a node (no engine: ``calls`` None) still
fulfils from its own thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proofmarket.core.errors import PaymentSettlementFailed, PaymentSettlementPending, UsageError
from proofmarket.db import EscrowRequestRow, EscrowStatus
from proofmarket.payments.port import Offer, RailExtras
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket

if TYPE_CHECKING:
    from proofmarket.intake.court import CourtService
    from proofmarket.intake.escrow import EscrowService

ESCROW_RAIL, COURT_RAIL = "escrow", "court"


def chain_ticket(rail: str, chain_id: int, contract: str, row: EscrowRequestRow) -> Ticket:
    """The ticket of one attempt at answering ``row`` (its nonce names the contract, the request and the attempt: a
    request answered again after a failed attempt, or after its answer left the chain, is a new call). No payer: the
    price is escrowed on chain, so the call holds nothing of the consumer's other balances."""
    doc = {"source": rail, "chain_id": chain_id, "contract": contract.lower(), "request_id": row.request_id,
           "attempt": row.attempts, "consumer": row.consumer.lower()}
    return Ticket(f"{rail}:{chain_id}:{contract.lower()}:{row.request_id}:{row.attempts}", int(row.amount), None, doc)


class ChainRail(RailExtras):
    """What the escrow and court rails share: requests come from the chain (never an HTTP credential), their price
    is escrowed there (nothing to hold or release here), and a call's settlement is read from its request's row."""

    name: str

    def __init__(self, watcher: EscrowService | CourtService) -> None:
        self.watcher = watcher

    def accepts(self, headers: Mapping[str, str]) -> bool:
        return False

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"x402": False, self.name: self.watcher.address}

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        raise UsageError(f"{self.watcher.noun}s are paid on chain ({self.watcher.contract}), not over HTTP")

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        return None

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        return None  # escrowed on chain when the request was made

    def release(self, ticket: Ticket) -> None:
        return None  # the consumer takes its escrow back on chain (a refund after the deadline)

    def _row(self, ticket: Ticket) -> EscrowRequestRow:
        doc = ticket.doc
        if int(doc.get("chain_id") or 0) != self.watcher.chain_id or \
                str(doc.get("contract") or "").lower() != self.watcher.address.lower():
            raise PaymentSettlementFailed(f"call {ticket.nonce} is for another contract than this node follows",
                                          nonce=ticket.nonce)
        return self.watcher.get(int(doc["request_id"]))

    def _paid(self, row: EscrowRequestRow, tx: str | None, extra: dict[str, Any]) -> Settlement:
        return Settlement(payment={"scheme": self.name, "network": f"eip155:{self.watcher.chain_id}",
                                   "amount": str(row.amount), "payer": row.consumer, "pay_to": self.watcher.address,
                                   "transaction": tx, "request_id": row.request_id, **extra})

    def _not_settled(self, ticket: Ticket, row: EscrowRequestRow) -> PaymentSettlementFailed:
        """Why the call of ``ticket`` will not settle: its request failed (its reason), or another attempt holds it."""
        if row.status == EscrowStatus.FAILED:  # a settlement failure (the runner fails the call on it, whatever the
            failed = PaymentSettlementFailed(  # code), with the request's code and sentence
                row.error_message or f"{self.watcher.noun} {row.request_id} was not answered",
                request_id=row.request_id)
            failed.code = row.error_code or PaymentSettlementFailed.code
            return failed
        if row.attempts == ticket.doc.get("attempt") and row.status == EscrowStatus.PROVING:
            return PaymentSettlementFailed(f"{self.watcher.noun} {row.request_id}: its answer was not mined",
                                           request_id=row.request_id)
        return PaymentSettlementFailed(f"{self.watcher.noun} {row.request_id} was answered by another attempt (it is "
                                       f"{row.status})", request_id=row.request_id)


class EscrowRail(ChainRail):
    """The ``escrow`` rail of a node whose escrow watcher runs (registered by ``NodeServices.start_background``)."""

    name = ESCROW_RAIL
    watcher: EscrowService

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        """Fulfil the request on chain with the call's answer (a proof shared with other calls: one ``fulfillBatch``
        for every proved call of it, ``escrow_batch.py``; the others then read their requests fulfilled)."""
        row = self._row(ticket)
        if row.status == EscrowStatus.PROVING and row.attempts == ticket.doc.get("attempt"):  # still this call's
            self.watcher.settle_answer(row, proof.bundle, proof.bundle_cid)  # (a timed-out or superseded attempt's
            row = self._row(ticket)  # call sends nothing: the request is another attempt's, or closed)
        return self._settled(ticket, row)

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """A fulfil waiting for its confirmations (the watcher follows its depth): settled once final."""
        row = self._row(ticket)
        if row.status == EscrowStatus.CONFIRMING and row.attempts == ticket.doc.get("attempt"):
            return None
        return self._settled(ticket, row)

    def _settled(self, ticket: Ticket, row: EscrowRequestRow) -> Settlement:
        """The call's settlement as its request's ``row`` reads now: fulfilled by this attempt -> settled; not final
        yet -> pending; closed any other way -> failed with its reason."""
        mine = row.attempts == ticket.doc.get("attempt")
        summary = row.settlement or {}
        tx = (summary.get("tx") or {}).get("hash") or row.fulfil_tx
        if mine and row.status == EscrowStatus.FULFILLED:
            return self._paid(row, tx, {k: summary.get(k) for k in ("owner_amount", "prover_amount", "platform_fee")})
        if mine and row.status == EscrowStatus.CONFIRMING:
            raise PaymentSettlementPending(f"escrow request {row.request_id}: fulfilled in tx {tx}, waiting for "
                                           f"{self.watcher.confirmations} confirmation(s)", tx=tx)
        raise self._not_settled(ticket, row)


class CourtRail(ChainRail):
    """The ``court`` rail of a node whose court watcher runs (registered by ``NodeServices.start_background``)."""

    name = COURT_RAIL
    watcher: CourtService

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        """Commit the generated answer (with every other one waiting: ``CourtService.commit_answer``); the court
        pays after its challenge window (``follow``)."""
        row = self._row(ticket)
        mine = row.attempts == ticket.doc.get("attempt")
        if mine and row.status == EscrowStatus.PROVING and self.watcher.others_generating(row):
            raise PaymentSettlementPending(f"court request {row.request_id}: generated; committed with the answers "
                                           "being generated beside it (the last of them commits them all)")
        if mine and row.status == EscrowStatus.PROVING and proof.bundle_cid:
            self.watcher.commit_answer(row, proof.bundle_cid)
            row = self._row(ticket)
        if mine and row.status in (EscrowStatus.CONFIRMING, EscrowStatus.FULFILLED):
            raise PaymentSettlementPending(f"court request {row.request_id}: committed; paid by the court once its "
                                           "challenge window closes")
        raise self._not_settled(ticket, row)

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """Move the committed request on (``CourtService.advance``: publish, finalize, resolve, each with its book
        entries): settled once the court paid; failed when it slashed the answer or refunded the request."""
        row = self._row(ticket)
        mine = row.attempts == ticket.doc.get("attempt")
        if mine and row.status == EscrowStatus.PROVING and proof.bundle_cid:  # left to be committed with others:
            self.watcher.commit_deferred(row, proof.bundle_cid)  # committed now, with whichever are generated
            row = self._row(ticket)
        if mine and row.status == EscrowStatus.FULFILLED and self.watcher.advance(row):
            row = self._row(ticket)
        if mine and row.status == EscrowStatus.FULFILLED and row.court_status == "paid":
            return self._paid(row, row.fulfil_tx or (row.settlement or {}).get("tx_hash"), {"court": "paid"})
        if mine and row.status == EscrowStatus.FULFILLED and row.court_status in ("slashed", "refunded"):
            raise PaymentSettlementFailed(f"court request {row.request_id}: the answer was {row.court_status} (the "
                                          "consumer was refunded)", request_id=row.request_id)
        if mine and row.status in (EscrowStatus.PROVING, EscrowStatus.CONFIRMING, EscrowStatus.FULFILLED):
            return None  # generated, being committed, or in its challenge window
        raise self._not_settled(ticket, row)
