"""Payouts and the operator's settling of them on the devnet's token (which can blocklist an address, as USDC does):
- a payee the token refuses is skipped with a backoff and named blocked; every other payee is paid in the same run
  (before: the run stopped at the first refused payee, in address order, on every run);
- ``ledger resolve REF --paid TX`` refuses a transaction the book already counts for another payout, and
  ``--not-sent`` is refused while the node's account shows a transfer to the payee the book does not hold;
- the ledger check names the node's solvency (its token balance against what the book owes others) and the
  channel charges it can no longer collect, which the operator writes off as one balanced entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from x402_helpers import Chain, funded_wallet

from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.errors import UsageError
from proofmarket.db import Database
from proofmarket.db.book import Accounts, Book, Transfer
from proofmarket.payments import payouts as payouts_module
from proofmarket.payments.payouts import Payouts
from proofmarket.payments.reconcile import reconcile
from proofmarket.payments.unknown import resolve_unknown, write_off

OWED = 7_000


@pytest.fixture
def book(tmp_path: Path) -> Book:
    database = Database(f"sqlite:///{tmp_path / 'book.db'}")
    database.migrate()
    return Book(database)


@pytest.fixture
def node(chain: Chain, request: pytest.FixtureRequest) -> LocalAccount:
    return funded_wallet(chain, f"payouts-node-{request.node.name}", 1_000_000)


def owe(book: Book, payee: str, amount: int = OWED, model: str = "m") -> None:
    book.post(Transfer.move(f"draw:{payee}:{model}", "draw", "credits", Accounts.wallet("0x" + "a1" * 20),
                            Accounts.payee(payee), amount, model_id=model))


def set_blocked(chain: Chain, address: str, blocked: bool) -> None:
    chain.client.transact(chain.usdc.contract.functions.setBlocked(to_checksum_address(address), blocked),
                          dev_account(0, DEVNET_CHAIN_ID))


def test_a_payee_the_token_refuses_does_not_stop_the_others(chain: Chain, book: Book, node: LocalAccount,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    payees = sorted(funded_wallet(chain, f"payee-{i}", 0).address.lower() for i in range(3))
    balances = lambda: chain.balances(*map(to_checksum_address, payees))  # noqa: E731
    for payee in payees:
        owe(book, payee)
    blocked = payees[0]  # sorted first: the old loop stopped there and paid nobody
    set_blocked(chain, blocked, True)
    try:
        before = balances()
        payouts = Payouts(book, chain.client, chain.usdc.address, node)
        report = payouts.run()
        after = balances()
        assert [a - b for a, b in zip(after, before, strict=True)] == [0, OWED, OWED]
        assert set(report.paid) == set(payees[1:]) and set(report.blocked) == {blocked}
        assert "refused" in report.blocked[blocked]["reason"] and report.blocked[blocked]["attempts"] == 1
        assert payouts.owed() == {blocked: {"m": OWED}}  # still owed, nothing moved
        assert set(payouts.blocked()) == {blocked}
        shown = payouts.blocked_state(blocked)  # what the owner's earnings view (and `proofmarket earnings`) shows
        assert shown is not None and "refused" in shown["reason"] and shown["attempts"] == 1
        assert payouts.blocked_state(payees[1]) is None

        again = payouts.run()  # within its backoff: not tried (no transaction, no gas)
        assert again.blocked[blocked]["attempts"] == 1 and not again.paid

        monkeypatch.setattr(payouts_module, "BLOCKED_BACKOFF_S", 0.0)  # the backoff has passed
        third = payouts.run()
        assert third.blocked[blocked]["attempts"] == 2  # refused again: the backoff doubles
    finally:
        set_blocked(chain, blocked, False)
    paid = payouts.run()
    assert set(paid.paid) == {blocked} and not paid.blocked
    assert balances()[0] - before[0] == OWED
    assert payouts.blocked() == {} and book.check() == []
    assert payouts.blocked_state(blocked) is None  # paid since: no longer shown as blocked


def test_resolve_refuses_a_transaction_the_book_already_counts(chain: Chain, book: Book, node: LocalAccount) -> None:
    payee = funded_wallet(chain, "resolve-payee", 0).address.lower()
    owe(book, payee, 2 * OWED)
    for ref in ("payout:first", "payout:second"):
        book.hold(Transfer.move(ref, "payout", "payout", Accounts.payee(payee), Accounts.wallet(payee), OWED,
                                model_id="m"))
        book.note_outcome_unknown(ref)
    sent = chain.usdc.transfer(to_checksum_address(payee), OWED, node).tx_hash  # the one payout that really left
    where = {"client": chain.client, "usdc": chain.usdc.address, "sender": node.address}

    with pytest.raises(UsageError, match="since payout:second was held"):
        resolve_unknown(book, "payout:second", not_sent="I see nothing", **where)  # the chain shows a transfer
    assert resolve_unknown(book, "payout:first", paid_tx=sent, **where)["outcome"] == "captured"
    with pytest.raises(UsageError, match="already booked for payout:first"):
        resolve_unknown(book, "payout:second", paid_tx=sent, **where)  # one transfer cannot pay two payouts
    done = resolve_unknown(book, "payout:second", not_sent="only one transfer left", **where)  # the book holds it
    assert done["outcome"] == "voided" and book.check() == []


def test_the_check_shows_solvency_and_what_can_no_longer_be_collected(chain: Chain, book: Book,
                                                                      node: LocalAccount) -> None:
    owe(book, "0x" + "0b" * 20, 400_000)  # what the node holds for an owner, out of its 1,000,000
    channel = "0x" + "cc" * 32
    book.hold(Transfer.move("charge:c1", "charge", "batch-settlement", Accounts.wallet("0x" + "a2" * 20),
                            Accounts.payee("0x" + "0b" * 20), 5_000, model_id="m",
                            memo={"channel_id": channel, "cumulative": "5000"}))
    report = reconcile(book, chain.client, chain.usdc.address, node.address, receivable_after_s=300.0,
                       refused=lambda: {})
    assert report.solvency is not None and report.solvency["solvent"] and report.solvency["owed"] == "400000"
    assert [r["channel_id"] for r in report.receivables] == [channel] and report.ok  # young: the sweep may claim it
    with pytest.raises(UsageError, match="may still be collected"):
        write_off(book, "charge:c1", "too early", refused={}, after_s=300.0)

    late = reconcile(book, chain.client, chain.usdc.address, node.address, receivable_after_s=0.0,
                     refused=lambda: {})  # past a sweep interval and still not claimed: a difference, named
    assert [r["late"] for r in late.receivables] == [True] and not late.ok
    assert any(f"channel {channel}: 1 charges (5000 atomic units) served and not collected" in d
               for d in late.differences), late.differences

    refused = {channel: "the channel contract refuses its voucher claim"}
    named = reconcile(book, chain.client, chain.usdc.address, node.address, receivable_after_s=300.0,
                      refused=lambda: refused)
    assert any("can no longer be collected" in d for d in named.differences)
    assert write_off(book, "charge:c1", "the payer's voucher was refused", refused=refused,
                     after_s=300.0)["outcome"] == "written off"
    assert reconcile(book, chain.client, chain.usdc.address, node.address, receivable_after_s=300.0,
                     refused=lambda: refused).ok and book.check() == []

    owe(book, "0x" + "0c" * 20, 700_000)  # the book owes more than the node account holds
    short = reconcile(book, chain.client, chain.usdc.address, node.address)
    assert short.shortfall == 100_000 and any(d.startswith("solvency:") for d in short.differences)


def test_a_node_account_short_of_funds_is_not_taken_for_a_blocked_payee(chain: Chain, book: Book) -> None:
    """Every transfer reverts when the node's own account is short: that stops the run with one sentence and marks
    no payee blocked (a review: each payee was backed off for hours and told the token refused it)."""
    from proofmarket.core.errors import ChainError

    poor = funded_wallet(chain, "payouts-node-poor", 1_000)
    payee = funded_wallet(chain, "poor-payee", 0).address.lower()
    owe(book, payee)
    payouts = Payouts(book, chain.client, chain.usdc.address, poor)
    with pytest.raises(ChainError, match="holds less USDC"):
        payouts.run()
    assert payouts.blocked() == {} and payouts.owed() == {payee: {"m": OWED}} and book.check() == []
