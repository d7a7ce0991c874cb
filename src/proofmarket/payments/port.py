"""The payment-rail port: how a call is paid. Rails: ``free``, ``x402`` (``exact/rail.py``), batch-settlement, upto,
credits; ``escrow`` and ``court`` (``intake/rails.py``: paid on chain before their call exists, accepted by their
watcher, settled by the call settler); another rail registers with the node (``node.build_node``, ``Rails.add``).

    POST /v1/models/{id}/infer (or any paid route; ``accept`` below is the one way a route accepts a call)
      -> inputs checked by the model's proof system (422 before any payment is looked at)
      -> Rails.select(headers)                -> the rail whose credential the request carries, else the default
      -> rail.payer_of(headers)                -> the payer, scoping the Idempotency-Key (a known key: its call)
      -> rail.verify(headers, offer)           authorize: Ticket | None (free) | raises 402 with its terms
      -> rail.cover(ticket, held)              the payer's balance covers this and its other unsettled calls
      -> the call stored with the ticket and its rail (the ticket's nonce is unique: a replay is refused)
      -> execute (the engine runs the proof system)
      -> rail.settle(ticket, outcome)          capture: Settlement (payment, receipt), or PaymentSettlementPending:
                                               the call is ``settling`` and rail.follow(...) is asked until it
                                               settles or fails
      -> rail.answer_headers(settlement)       the response headers (x402 PAYMENT-RESPONSE), rebuilt at answer
                                               time: never stored
    If execution fails nothing is captured and rail.release(ticket) gives the payment up; so does a verified
    payment the request turns out not to need (an idempotent retry).

A rail may bring its own routes, tables and background loops, declared on the port (``RailExtras`` brings none:
a rail inherits it and overrides what it has; ``routers_of``, ``Rails.tables`` and ``services_of`` read them):

    rail.routers()   FastAPI routers the node's API mounts beside its own (``routers_of``; ``payments/routes.py``: the
                     routes reach the node through a ``RailHost``, never by importing the API or another rail)
    rail.tables      SQLAlchemy tables: the node creates those that no migration holds when it starts
                     (``Rails.tables()``, ``Database.ensure_tables``). A rail in this tree puts them on the node's
                     ``Base`` (``db/tables.py``) with an Alembic revision; a rail from elsewhere on a ``MetaData`` of
                     its own (``Base.metadata`` is what the migrations are checked against)
    rail.services()  background loops (``core/background.py``) the node supervises beside its own: the channels'
                     sweeper (``services_of``; started after the engine, stopped before it)

Errors a rail raises may carry ``headers`` (e.g. ``PAYMENT-REQUIRED``); the API's error handler sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from proofmarket.core.errors import PaymentReplayed, UsageError
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket

if TYPE_CHECKING:  # the web and database layers load with the node, not with the port
    from fastapi import APIRouter
    from sqlalchemy import Table

log = logging.getLogger(__name__)
R = TypeVar("R")
C = TypeVar("C")


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
    # metered (a generation): the rate per 1,000 output tokens, price_atomic its ceiling (max_tokens); a rail
    # that can charge less than it authorized charges what was produced (``Ticket.used``)
    per_1k_tokens: int | None = None
    # what an answer guarantees, declared in the 402 terms' bazaar extension: ``ServedModel.verifiable`` as JSON
    # (an offer is hashable: the terms of one offer are built once)
    verifiable: str | None = None
    # the request's input commitment (0x bytes32), computed when a rail asks (x402 proven binds the payment to it);
    # None: the model's system has none. Not part of the terms: offers differing only by it are the same terms.
    input_commitment: Callable[[], str | None] | None = field(default=None, compare=False, hash=False, repr=False)


class Rail(Protocol):
    name: str  # the rail's id, stored on each call ("free", "x402", ...)
    tables: tuple[Table, ...]  # the tables it brings (``RailExtras``: none)
    verify_holds_funds: bool  # its ``verify`` held the call's funds itself: no ``cover`` (a channel's voucher)

    def routers(self) -> list[APIRouter]:
        """The routers the node mounts beside its own (``RailExtras``: none)."""
        ...

    def services(self) -> list[Any]:
        """The background loops the node supervises for it (``RailExtras``: none)."""
        ...

    def close(self) -> None:
        """Close what it holds open (a remote facilitator's HTTP client); never raises."""
        ...

    def accepts(self, headers: Mapping[str, str]) -> bool:
        """The request carries this rail's credential (a payment header, a key): this rail pays for it."""
        ...

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        """The response headers of a settled call (x402: PAYMENT-RESPONSE), rebuilt from the settlement."""
        ...

    def describe(self) -> dict[str, Any]:
        """For discovery documents: at least ``{"x402": bool}``; the gate adds scheme, network, asset, chain."""
        ...

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        """Check the request's payment for ``offer`` without settling it. ``None``: the call is free.
        ``headers`` are the request's (case-insensitive: ``headers.get("PAYMENT-SIGNATURE")``).
        Raise ``PaymentRequired`` (no payment) or ``PaymentRejected`` (wrong amount, expired, replayed...)."""
        ...

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        """Who pays, by the payment's own signature (no RPC), or None: scopes Idempotency-Keys by payer."""
        ...

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        """Raise ``PaymentInsufficientFunds`` when the payer's balance minus ``held_atomic`` (held by its
        other unsettled jobs) does not cover ``ticket``."""
        ...

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        """Settle a verified payment once its proof is ready (see ``proofmarket.payments.tickets.SettleHook``);
        ``PaymentSettlementPending`` when it was sent but is not confirmed yet."""
        ...

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        """A pending settlement: settled, None (still pending) or ``PaymentSettlementFailed`` (see SettleHook)."""
        ...

    def release(self, ticket: Ticket) -> None:
        """Give up a verified payment that will not be settled (its job failed, or it was not needed)."""
        ...


class RailExtras:
    """What a rail brings beyond paying for calls, none by default: a rail inherits this and overrides what it has
    (its tables, routers, background loops, something to close; ``verify_holds_funds``)."""

    tables: tuple[Table, ...] = ()
    verify_holds_funds = False

    @staticmethod
    def routers() -> list[APIRouter]:
        return []

    def services(self) -> list[Any]:
        return []

    def close(self) -> None:
        return None


class FreeAccess(RailExtras):
    """Payments off: every call is free and nothing is ever settled."""

    name = "free"

    def accepts(self, headers: Mapping[str, str]) -> bool:
        return False

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"x402": False}

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        return None

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        return None

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        return None

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        return Settlement()

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        return Settlement()

    def release(self, ticket: Ticket) -> None:
        return None


class Rails:
    """The node's payment rails: the default (x402 when payments are on, else free) and any others registered.

    ``select(headers)`` picks the rail whose credential the request carries (the first that ``accepts`` it), else
    the default, which then answers 402 with its terms when the call is not free. ``get(name)`` finds the rail a
    stored call was paid on (a call of a rail this node no longer runs: ``UsageError``)."""

    def __init__(self, default: Rail, others: list[Rail] | None = None) -> None:
        self.default = default
        self._rails: dict[str, Rail] = {_name(r): r for r in [*(others or []), default]}

    def all(self) -> list[Rail]:
        return list(self._rails.values())

    def add(self, rail: Rail) -> None:
        """Register a rail the node runs once it is built (the escrow watcher's): its calls settle through it. A
        rail of that name already registered is kept (an app whose lifespan runs again builds nothing twice)."""
        self._rails.setdefault(_name(rail), rail)

    def of(self, kind: type[R]) -> R | None:
        """The rail of this class, if the node runs one (a route of one rail asks for its own: the credits routes
        for the credits rail, the channels routes for the batch-settlement rail)."""
        return next((r for r in self._rails.values() if isinstance(r, kind)), None)

    def tables(self) -> list[Table]:
        """The tables the rails bring (each once)."""
        seen: dict[int, Table] = {}
        for rail in self._rails.values():
            for table in rail.tables:
                seen.setdefault(id(table), table)
        return list(seen.values())

    def select(self, headers: Mapping[str, str]) -> Rail:
        for rail in self._rails.values():
            if rail is not self.default and rail.accepts(headers):
                return rail
        return self.default

    def get(self, name: str | None) -> Rail:
        rail = self._rails.get(name or _name(self.default))
        if rail is None:
            raise UsageError(f"this node has no payment rail {name!r} (it runs {', '.join(self._rails)})",
                             rail=name)
        return rail

    def answer_headers(self, name: str | None, settlement: Settlement) -> dict[str, str]:
        return self.get(name).answer_headers(settlement)

    def close(self) -> None:
        """Close what the rails hold open (a remote facilitator's HTTP client). Never raises: it runs at the node's
        shutdown."""
        for rail in self._rails.values():
            try:
                rail.close()
            except Exception:
                log.warning("could not close payment rail %s", _name(rail), exc_info=True)


def routers_of(rails: Iterable[Rail | type[RailExtras]]) -> list[APIRouter]:
    """The routers of ``rails`` (rails, or rail classes: their ``routers()`` is static), each router once."""
    out: dict[int, APIRouter] = {}
    for rail in rails:
        for router in rail.routers():
            out.setdefault(id(router), router)
    return list(out.values())


def services_of(rail: Rail) -> list[Any]:
    """The background loops ``rail`` brings (its ``services()``)."""
    return list(rail.services())


def _name(rail: Rail) -> str:
    return str(rail.name or "default")

def cover_of(rail: Rail) -> Callable[[Ticket, int], None] | None:
    """The funds check a new call of ``rail`` needs (``cover``, run under the payer's funds lock with what its other
    calls hold), or None when the rail's ``verify`` already held this call's funds itself (a rail that says so with
    ``verify_holds_funds = True``: a channel's voucher is reserved against its channel, one call at a time)."""
    return None if rail.verify_holds_funds else rail.cover


@dataclass(frozen=True)
class Accepted(Generic[C]):
    """A call accepted: its row (``call``: a stored call, or the one an Idempotency-Key named), its payment (None:
    free, or found by its key) and the rail that verified it."""

    call: C
    ticket: Ticket | None
    rail: Rail


def accept(rails: Rails, offer: Offer, headers: Mapping[str, str],
           store: Callable[[Ticket | None, Rail], C], *,
           existing: Callable[[str | None], C | None] | None = None) -> Accepted[C]:
    """The one way every route that sells a call accepts it: the rail the request's credential names
    (``Rails.select``), the call an Idempotency-Key already made for this payer (``existing(payer)``: returned as is,
    nothing verified), the payment verified for ``offer`` (402 otherwise), then the call stored with it (``store``:
    the payer's funds covered under its lock, ``cover_of``; queued, or opened for a route that runs it). A payment
    whose call is not stored is released; so is one a concurrent retry with the same key made unnecessary."""
    rail = rails.select(headers)
    if existing is not None:
        found = existing(rail.payer_of(headers))
        if found is not None:
            return Accepted(found, None, rail)
    ticket = rail.verify(headers, offer)
    call = hold(rail, ticket, lambda: store(ticket, rail))
    if ticket is not None and getattr(call, "payment_nonce", ticket.nonce) != ticket.nonce:  # a retry's call won
        rail.release(ticket)
    return Accepted(call, ticket, rail)


def hold(rail: Rail, ticket: Ticket | None, store: Callable[[], R]) -> R:
    """Store a call with its verified payment (``store``); if storing fails the payment is released, except when its
    nonce belongs to another call already (``PaymentReplayed``: that call's reservation is not this one's to free).
    The one way a route turns a verified payment into a held call."""
    try:
        return store()
    except PaymentReplayed:
        raise
    except BaseException:
        if ticket is not None:
            rail.release(ticket)
        raise
