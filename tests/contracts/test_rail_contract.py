"""The contract every payment rail passes (``payments/port.py``): run here on the toy rail of ``tests/lifecycle``
(written against the port only) and on the credits rail (API keys over the node's database and book). A new rail
joins by adding a harness to ``HARNESSES``: nothing in ``src/`` changes.

    authorize   ``verify`` names the payer its credential says, for the offer's price; a request without the
                credential is not this rail's
    cover       a balance that cannot hold the call on top of what is held is refused
    capture     ``settle`` moves the price once, however often it is called (double capture refused)
    release     a released ticket moves nothing, and the payer's funds are whole for the next call
    pending     ``follow`` answers a settled ticket with its settlement (or None: still pending), never a charge
    ledger      what the captures moved is balanced in the book (every transfer sums to zero, no account below)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from toy_plugins import ToyRail  # noqa: E402

from proofmarket.core.errors import PaymentInsufficientFunds, PaymentRequired, ProofMarketError
from proofmarket.db.book import Book
from proofmarket.db.engine import Database
from proofmarket.payments.credits.rail import CreditsRail, key_hash
from proofmarket.payments.credits.repo import CreditsRepo
from proofmarket.payments.port import Offer, Rail
from proofmarket.payments.tickets import ProofOutcome, Settlement

PRICE = 2_500
FUNDS = 10 * PRICE
MODEL = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
OFFER = Offer(model_id=MODEL, model_name="contract", price_atomic=PRICE, resource="http://node/v1/models/m/infer")


@dataclass
class Harness:
    rail: Rail
    payer: Callable[[], dict[str, str]]  # the headers of a funded payer (FUNDS)
    poor: Callable[[], dict[str, str]]  # the headers of a payer with less than PRICE
    balance: Callable[[str], int]  # what a payer can still spend
    book: Book  # where captures land (the runner posts a settlement's transfers; some rails post their own)


def _toy(tmp_path: Path) -> Harness:
    rail = ToyRail({"rich": FUNDS, "poor": PRICE - 1})
    return Harness(rail, lambda: {ToyRail.HEADER: "rich"}, lambda: {ToyRail.HEADER: "poor"},
                   lambda payer: rail.balances[payer], Book(_db(tmp_path)))


def _credits(tmp_path: Path) -> Harness:
    repo = CreditsRepo(_db(tmp_path))
    rail = CreditsRail(repo, Account.create(), "eip155:31337")

    def wallet_with(amount: int) -> dict[str, str]:
        wallet, secret = Account.create().address, f"pmk_{secrets.token_hex(16)}"
        repo.add_key(f"k{secrets.token_hex(4)}", wallet, key_hash(secret), None, None, None)
        if amount:
            repo.add(wallet, "deposit", amount, f"seed:{wallet}")
        return {"Authorization": f"Bearer {secret}"}

    return Harness(rail, lambda: wallet_with(FUNDS), lambda: wallet_with(PRICE - 1), repo.balance, repo.book)


def _db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'contract.db'}")
    db.migrate()
    return db


HARNESSES: dict[str, Callable[[Path], Harness]] = {"toy": _toy, "credits": _credits}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield HARNESSES[request.param](tmp_path)


def _outcome(n: int = 0) -> ProofOutcome:
    return ProofOutcome(job_id=f"job-{n}", model_id=MODEL, bundle_cid=MODEL, input_commitment="0x" + "11" * 32,
                        output_hash="0x" + "22" * 32, bundle={"model": {"id": MODEL}})


def _ticket(h: Harness, headers: dict[str, str] | None = None) -> tuple[Any, str, int]:
    """A funded payer's ticket for the offer, its payer and what the payer can spend before it is settled."""
    ticket = h.rail.verify(headers if headers is not None else h.payer(), OFFER)
    assert ticket is not None
    return ticket, str(ticket.payer), h.balance(str(ticket.payer))


def _post(h: Harness, settlement: Settlement) -> None:
    for transfer in settlement.transfers:  # what the runner does with the call's settled state
        h.book.post(transfer)


def test_authorize_names_the_payer_and_the_price(harness: Harness) -> None:
    headers = harness.payer()
    assert harness.rail.accepts(headers) and not harness.rail.accepts({})
    ticket = harness.rail.verify(headers, OFFER)
    assert ticket is not None and ticket.amount_atomic == PRICE
    assert str(ticket.payer).lower() == str(harness.rail.payer_of(headers)).lower()


def test_a_request_without_a_usable_credential_is_refused(harness: Harness) -> None:
    with pytest.raises((PaymentRequired, ProofMarketError)) as refused:
        harness.rail.verify({"Authorization": "Bearer pmk_unknown", "X-Toy-Credit": "nobody"}, OFFER)
    assert 400 <= refused.value.http_status < 500


def test_cover_refuses_what_the_balance_cannot_hold(harness: Harness) -> None:
    rich = harness.rail.verify(harness.payer(), OFFER)
    assert rich is not None
    harness.rail.cover(rich, 0)
    with pytest.raises(PaymentInsufficientFunds):
        harness.rail.cover(rich, FUNDS - PRICE + 1)  # the other calls it holds leave too little
    poor = harness.rail.verify(harness.poor(), OFFER)
    assert poor is not None
    with pytest.raises(PaymentInsufficientFunds):
        harness.rail.cover(poor, 0)


def test_capture_moves_the_price_once_and_the_book_balances(harness: Harness) -> None:
    ticket, payer, before = _ticket(harness)
    first = harness.rail.settle(ticket, _outcome())
    _post(harness, first)
    again = harness.rail.settle(ticket, _outcome())  # a retried capture (a crash after it, a second worker)
    _post(harness, again)
    assert harness.balance(payer) == before - PRICE
    assert harness.book.check() == []


def test_pending_answers_with_the_settlement_never_a_second_charge(harness: Harness) -> None:
    ticket, payer, _ = _ticket(harness)
    settled = harness.rail.settle(ticket, _outcome(1))
    _post(harness, settled)
    after = harness.balance(payer)
    followed = harness.rail.follow(ticket, _outcome(1), None)
    assert followed is None or isinstance(followed, Settlement)
    if followed is not None:
        _post(harness, followed)
    assert harness.balance(payer) == after and harness.book.check() == []


def test_release_moves_nothing_and_leaves_the_funds_whole(harness: Harness) -> None:
    headers = harness.payer()
    ticket, payer, before = _ticket(harness, headers)
    harness.rail.release(ticket)
    assert harness.balance(payer) == before
    again = harness.rail.verify(headers, OFFER)  # the next call of the same payer is taken as the first was
    assert again is not None and again.nonce != ticket.nonce
    harness.rail.cover(again, 0)
    assert harness.book.check() == []


def test_concurrent_captures_of_one_ticket_charge_once(harness: Harness) -> None:
    import threading

    ticket, payer, before = _ticket(harness)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(harness.rail.settle(ticket, _outcome(2))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for settlement in results:
        _post(harness, settlement)
    assert len(results) == 4 and harness.balance(payer) == before - PRICE
    assert harness.book.check() == []
