"""The book: balanced transfers once per ref, two phases, no internal account below zero, and its own check."""

from __future__ import annotations

import threading

import db_backends
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from proofmarket.db import Database
from proofmarket.db.book import Accounts, Book, LedgerError, Transfer
from proofmarket.db.tables import Base
from proofmarket.payments import tables as rail_tables  # noqa: F401 (the rails' tables are in the schema)

# the fixtures: each test on SQLite and PostgreSQL
db, empty_db_url, pg_url = db_backends.db, db_backends.empty_db_url, db_backends.pg_url
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
OWNER = "0x" + "0b" * 20


def test_the_migration_builds_exactly_the_tables(db: Database) -> None:
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []


def test_a_transfer_posts_once_per_ref_and_balances(db: Database) -> None:
    book = Book(db)
    buy = Transfer.move("buy-1", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 500)
    row, new = book.post(buy)
    again, new_again = book.post(buy)
    assert new and not new_again and again.id == row.id
    assert book.balance(Accounts.credits(ALICE)).posted == 500
    assert book.balance(Accounts.wallet(ALICE)).posted == -500  # the outside world may go below zero
    with pytest.raises(LedgerError, match="does not balance"):
        book.post(Transfer("bad", "purchase", "credits", ((Accounts.credits(ALICE), 5),)))
    assert book.check() == []


def test_a_second_write_of_a_ref_with_other_postings_is_refused_not_taken_as_the_first(db: Database) -> None:
    """A retry writes the same transfer again and gets the first back; another amount, account, kind or phase under
    a reference already taken is another movement of value: refused, and nothing of it is written."""
    book = Book(db)
    first = Transfer.move("pay-7", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 500)
    book.post(first)
    others = [Transfer.move("pay-7", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 501),
              Transfer.move("pay-7", "purchase", "credits", Accounts.wallet(BOB), Accounts.credits(BOB), 500),
              Transfer.move("pay-7", "refund", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 500)]
    for other in others:
        with pytest.raises(LedgerError, match="pay-7 is taken"):
            book.post(other)
    with pytest.raises(LedgerError, match="pay-7 is taken"):
        book.hold(first)  # the same postings, pending this time
    assert book.balance(Accounts.credits(ALICE)).posted == 500 and book.balance(Accounts.credits(BOB)).posted == 0
    assert book.post(first)[1] is False and book.check() == []


def test_no_internal_account_goes_below_zero(db: Database) -> None:
    book = Book(db)
    book.post(Transfer.move("buy", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 100))
    with pytest.raises(LedgerError, match="below zero"):
        book.post(Transfer.move("draw", "draw", "credits", Accounts.credits(ALICE), Accounts.payee(OWNER), 101))
    assert book.transfer("draw") is None  # nothing was written
    assert book.balance(Accounts.credits(ALICE)).posted == 100
    assert book.check() == []


def test_a_pending_transfer_holds_then_captures_or_voids_once(db: Database) -> None:
    book = Book(db)
    book.post(Transfer.move("buy", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 100))
    book.hold(Transfer.move("call-1", "draw", "credits", Accounts.credits(ALICE), Accounts.payee(OWNER), 80))
    assert book.balance(Accounts.credits(ALICE)).available == 20  # held
    with pytest.raises(LedgerError, match="below zero"):  # what is held cannot be spent twice
        book.hold(Transfer.move("call-2", "draw", "credits", Accounts.credits(ALICE), Accounts.payee(OWNER), 30))
    # a metered capture takes less than it held; the rest is free again
    book.capture("call-1", postings=[(Accounts.credits(ALICE), -50), (Accounts.payee(OWNER), 50)])
    book.capture("call-1")  # once: the second capture returns the first
    assert book.balance(Accounts.credits(ALICE)) .available == 50
    assert book.balance(Accounts.payee(OWNER)).posted == 50
    with pytest.raises(LedgerError, match="captured"):
        book.void("call-1")
    book.hold(Transfer.move("call-3", "draw", "credits", Accounts.credits(ALICE), Accounts.payee(OWNER), 40))
    book.void("call-3", reason="the call failed")
    with pytest.raises(LedgerError, match="voided"):
        book.capture("call-3")
    assert book.balance(Accounts.credits(ALICE)).available == 50
    assert [t.ref for t in book.open_pending()] == []
    assert book.check() == []


def test_a_capture_cannot_move_more_than_it_held(db: Database) -> None:
    book = Book(db)
    book.post(Transfer.move("buy", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 100))
    book.hold(Transfer.move("call", "draw", "credits", Accounts.credits(ALICE), Accounts.payee(OWNER), 10))
    with pytest.raises(LedgerError, match="beyond what it holds"):
        book.capture("call", postings=[(Accounts.credits(ALICE), -20), (Accounts.payee(OWNER), 20)])
    with pytest.raises(LedgerError, match="beyond what it holds"):
        book.capture("call", postings=[(Accounts.credits(ALICE), -10), (Accounts.PLATFORM, 10)])


def test_check_names_an_account_that_disagrees_with_its_postings(db: Database) -> None:
    book = Book(db)
    book.post(Transfer.move("buy", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 100))
    with db.engine.begin() as conn:  # a write around the book
        conn.exec_driver_sql(f"UPDATE book_accounts SET posted = '999' WHERE name = '{Accounts.credits(ALICE)}'")
    problems = book.check()
    assert len(problems) == 1 and Accounts.credits(ALICE) in problems[0]


def test_concurrent_spends_never_overdraw(db: Database) -> None:
    """Eight writers (threads, one session each) spend 30 of a balance of 100: three succeed, none overdraws."""
    book = Book(db)
    book.post(Transfer.move("buy", "purchase", "credits", Accounts.wallet(ALICE), Accounts.credits(ALICE), 100))
    done: list[bool] = []
    barrier = threading.Barrier(8)

    def spend(i: int) -> None:
        barrier.wait()
        try:
            book.post(Transfer.move(f"draw-{i}", "draw", "credits", Accounts.credits(ALICE), Accounts.payee(OWNER), 30))
            done.append(True)
        except LedgerError:
            done.append(False)

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done.count(True) == 3
    assert book.balance(Accounts.credits(ALICE)).posted == 10
    assert book.check() == []


def test_writers_creating_the_same_new_account_at_once_all_post(db: Database) -> None:
    """Eight writers post at once to accounts no transfer named before (each its own payer, one new payee): the
    payee's row is created once, no writer fails (on PostgreSQL a second plain insert of it failed its writer's
    whole transaction: a paid call answered 500 under load), and the payee holds the sum."""
    book = Book(db)
    failed: list[str] = []
    barrier = threading.Barrier(8)

    def pay(i: int) -> None:
        payer = "0x" + f"{i + 1:02x}" * 20
        barrier.wait()
        try:
            book.post(Transfer.move(f"pay-{i}", "capture", "x402", Accounts.wallet(payer), Accounts.payee(OWNER), 7))
        except Exception as exc:  # noqa: BLE001 (the test names any failure)
            failed.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    assert book.balance(Accounts.payee(OWNER)).posted == 56
    assert book.check() == []


def test_what_an_ended_pass_did_not_spend_goes_to_the_platform_once(db: Database) -> None:
    from datetime import timedelta

    from proofmarket.payments.credits.repo import CreditsRepo
    from proofmarket.payments.credits.tables import CreditPassRow

    repo = CreditsRepo(db)
    book = repo.book
    book.post(Transfer.move("purchase:p1", "purchase", "x402", Accounts.wallet(ALICE), Accounts.pass_("x402:p1"), 90,
                            memo={"per_call": "30"}))
    row = repo.add_pass(ALICE, None, 3, 1, "x402:p1")
    assert repo.pay_pass_call("call-1", "x402:p1", ALICE, "m", OWNER) == 30
    assert repo.close_ended_passes() == 0  # still running
    with db.session() as s:
        live = s.get(CreditPassRow, row.id)
        assert live is not None
        live.ends_at = live.ends_at - timedelta(days=2)
    assert repo.close_ended_passes() == 1 and repo.close_ended_passes() == 0  # once
    assert book.balance(Accounts.PLATFORM).posted == 60 and book.balance(Accounts.pass_("x402:p1")).posted == 0
    assert repo.pay_pass_call("call-2", "x402:p1", ALICE, "m", OWNER) == 0  # nothing left to pay with
    assert book.check() == []


def test_a_payout_with_no_known_transaction_is_never_voided_and_is_named(db: Database) -> None:
    """A payout held with no recorded transaction may have left (a crash or an RPC failure between its send and
    its record): the payout pass leaves it held (voiding could pay twice) and the ledger check names it."""
    from types import SimpleNamespace

    from proofmarket.payments.payouts import PayoutReport, Payouts
    from proofmarket.payments.reconcile import reconcile

    book = Book(db)
    book.post(Transfer.move("draw", "draw", "credits", Accounts.wallet(ALICE), Accounts.payee(OWNER), 50,
                            model_id="m"))
    book.hold(Transfer.move("payout:1", "payout", "payout", Accounts.payee(OWNER), Accounts.wallet(OWNER), 50,
                            model_id="m"))
    book.note_outcome_unknown("payout:1")
    payouts = Payouts(book, None, "", SimpleNamespace(address="0x" + "99" * 20))  # type: ignore[arg-type]
    report = PayoutReport()
    payouts._confirm(report)
    assert report.waiting == ["payout:1"] and report.voided == []
    assert book.closing("payout:1") is None and payouts.owed() == {}  # still held: not paid again
    named = reconcile(book).differences
    assert len(named) == 1 and "payout:1" in named[0] and "no known transaction" in named[0]


def test_the_operator_settles_an_unknown_outcome_and_nothing_else(db: Database) -> None:
    """A held payout whose outcome no machine may decide: the operator voids it (never sent: owed again) or captures
    it with a transaction the chain confirms; a transfer the node still follows is not the operator's to settle."""
    from types import SimpleNamespace

    from proofmarket.core.errors import UsageError
    from proofmarket.payments.payouts import Payouts
    from proofmarket.payments.unknown import resolve_unknown, unknown_outcomes

    book = Book(db)
    book.post(Transfer.move("draw", "draw", "credits", Accounts.wallet(ALICE), Accounts.payee(OWNER), 80,
                            model_id="m"))
    for ref in ("payout:lost", "payout:followed"):
        book.hold(Transfer.move(ref, "payout", "payout", Accounts.payee(OWNER), Accounts.wallet(OWNER), 40,
                                model_id="m"))
    book.note_outcome_unknown("payout:lost")
    book.note_tx("payout:followed", "0x" + "ab" * 32)
    assert [u["ref"] for u in unknown_outcomes(book)] == ["payout:lost"]
    with pytest.raises(UsageError, match="followed by the node"):
        resolve_unknown(book, "payout:followed", not_sent="looked")
    with pytest.raises(UsageError, match="either"):
        resolve_unknown(book, "payout:lost")
    no_receipt = SimpleNamespace(receipt=lambda tx: None)
    with pytest.raises(UsageError, match="not a mined"):  # a hash the chain does not know is no proof of payment
        resolve_unknown(book, "payout:lost", paid_tx="0x" + "cd" * 32, client=no_receipt,  # type: ignore[arg-type]
                        usdc="0x" + "11" * 20, sender="0x" + "99" * 20)
    assert book.closing("payout:lost") is None
    done = resolve_unknown(book, "payout:lost", not_sent="the node's account shows no transfer to the owner")
    assert done["outcome"] == "voided" and book.closing("payout:lost") is not None
    payouts = Payouts(book, None, "", SimpleNamespace(address="0x" + "99" * 20))  # type: ignore[arg-type]
    assert payouts.owed() == {OWNER: {"m": 40}}  # owed again: the next payout pays it
    assert unknown_outcomes(book) == [] and book.check() == []
    with pytest.raises(UsageError, match="settled already"):
        resolve_unknown(book, "payout:lost", not_sent="twice")
