"""``payments.port.accept``: the one way a route turns a request into a held call (infer, generate, OpenAI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from proofmarket.core.errors import PaymentReplayed, PaymentRequired, ProofMarketError
from proofmarket.payments.port import FreeAccess, Offer, Rail, Rails, accept
from proofmarket.payments.tickets import Ticket

OFFER = Offer(model_id="m", model_name="m", price_atomic=100, resource="http://node/v1/models/m/infer")


@dataclass
class Call:
    id: str
    payment_nonce: str | None


class KeyRail(FreeAccess):
    """Pays with ``X-Key: <payer>:<nonce>``; records what it verified and released."""

    name = "key"

    def __init__(self) -> None:
        self.verified: list[str] = []
        self.released: list[str] = []

    def accepts(self, headers: Mapping[str, str]) -> bool:
        return "X-Key" in headers

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        return headers["X-Key"].split(":")[0] if "X-Key" in headers else None

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        if "X-Key" not in headers:
            raise PaymentRequired("pay with X-Key")
        payer, nonce = headers["X-Key"].split(":")
        self.verified.append(nonce)
        return Ticket(nonce, offer.price_atomic, payer)

    def release(self, ticket: Ticket) -> None:
        self.released.append(ticket.nonce)


@pytest.fixture
def rail() -> KeyRail:
    return KeyRail()


def _rails(rail: KeyRail) -> Rails:
    return Rails(rail)


def test_a_verified_payment_is_stored_with_its_call(rail: KeyRail) -> None:
    stored: list[tuple[Ticket | None, Rail]] = []

    def store(ticket: Ticket | None, by: Rail) -> Call:
        stored.append((ticket, by))
        return Call("c1", ticket.nonce if ticket else None)

    accepted = accept(_rails(rail), OFFER, {"X-Key": "alice:n1"}, store)
    assert accepted.call == Call("c1", "n1") and accepted.rail is rail and accepted.ticket is not None
    assert [(t.nonce if t else None, r) for t, r in stored] == [("n1", rail)]
    assert rail.released == []


def test_a_known_key_returns_its_call_without_a_second_payment(rail: KeyRail) -> None:
    asked: list[str | None] = []

    def existing(payer: str | None) -> Call | None:
        asked.append(payer)
        return Call("earlier", "n0") if payer == "alice" else None

    def store(ticket: Ticket | None, by: Rail) -> Call:
        raise AssertionError("a retry stores nothing")

    accepted = accept(_rails(rail), OFFER, {"X-Key": "alice:n2"}, store, existing=existing)
    assert accepted.call == Call("earlier", "n0") and accepted.ticket is None
    assert asked == ["alice"] and rail.verified == []  # the payer's own signature scopes the key: nothing verified


def test_no_payment_is_refused_before_anything_is_stored(rail: KeyRail) -> None:
    with pytest.raises(PaymentRequired):
        accept(_rails(rail), OFFER, {}, lambda ticket, by: pytest.fail("stored without a payment"))


def test_a_payment_whose_call_is_not_stored_is_released(rail: KeyRail) -> None:
    def store(ticket: Ticket | None, by: Rail) -> Call:
        raise ProofMarketError("the database went away")

    with pytest.raises(ProofMarketError):
        accept(_rails(rail), OFFER, {"X-Key": "alice:n3"}, store)
    assert rail.released == ["n3"]


def test_a_replayed_payment_releases_nothing_of_the_call_that_holds_it(rail: KeyRail) -> None:
    def store(ticket: Ticket | None, by: Rail) -> Any:
        raise PaymentReplayed("this payment was already used for another request")

    with pytest.raises(PaymentReplayed):
        accept(_rails(rail), OFFER, {"X-Key": "alice:n4"}, store)
    assert rail.released == []  # its reservation belongs to the call that used it first


def test_a_concurrent_retry_that_won_releases_this_payment(rail: KeyRail) -> None:
    accepted = accept(_rails(rail), OFFER, {"X-Key": "alice:n5"}, lambda ticket, by: Call("won", "n-other"))
    assert accepted.call.id == "won" and rail.released == ["n5"]
