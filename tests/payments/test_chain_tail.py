"""A node restored from an older backup pays nothing twice (issue 72): the book's chain tail.

The scenario, on SQLite and PostgreSQL: a book owes a payee and holds a wallet's credits; it is backed up; the node
then pays the payee out and refunds the wallet (real transfers on the devnet's token); the older backup is restored.
Before: the restored book owed both again, the next payout paid the payee a second time and the refund was open
again, and the ledger check said ok. Now the check names both transfers (chain -> book), the node pays nothing and
refunds nothing until the operator replays them, and a replay books each as what the book owed (the check agrees
with the chain after it, and nothing is owed twice)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import db_backends
import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from sqlalchemy import create_engine, text
from x402_helpers import Chain, funded_wallet

from proofmarket.core.errors import BookBehindChain, UsageError
from proofmarket.db import Database
from proofmarket.db.book import Accounts, Book, Transfer
from proofmarket.payments.chain_tail import ChainTail
from proofmarket.payments.credits.rail import CreditsRail
from proofmarket.payments.credits.repo import CreditsRepo
from proofmarket.payments.onchain import NodeChain
from proofmarket.payments.payouts import Payouts
from proofmarket.payments.settler import Money

db, empty_db_url, pg_url = db_backends.db, db_backends.empty_db_url, db_backends.pg_url

OWED, CREDITS = 7_000, 5_000


def copy_of(database: Database, tmp_path: Path) -> str:
    """A backup of the database as it is now (closed first, as a restore would find it): its URL."""
    database.close()
    if database.url.startswith("sqlite"):
        target = tmp_path / "restored.db"
        shutil.copy(database.url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    server, _, rest = database.url.partition("@/")  # postgresql+psycopg://user@/name?host=...&port=...
    name, _, query = rest.partition("?")
    engine = create_engine(f"{server}@/postgres?{query}", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}_copy" TEMPLATE "{name}"'))
    engine.dispose()
    return f"{server}@/{name}_copy?{query}"


class Node:
    """What a node builds around its book: the tail, the one payout path and the credits rail, gated alike."""

    def __init__(self, database: Database, chain: Chain, account: LocalAccount) -> None:
        self.book = Book(database)
        self.tail = ChainTail(self.book, chain.client, chain.usdc.address, account.address)
        self.payouts = Payouts(self.book, chain.client, chain.usdc.address, account, gate=self.tail.gate)
        self.credits = CreditsRail(CreditsRepo(database), account, chain.network,
                                   NodeChain(chain.client, chain.rpc_url, chain.usdc.address, account, account,
                                             account.address))
        self.credits.gate = self.tail.gate
        self.money = Money(self.book, payouts=self.payouts, tail=self.tail)


@pytest.fixture
def node_account(chain: Chain, request: pytest.FixtureRequest) -> LocalAccount:
    return funded_wallet(chain, f"tail-node-{request.node.name}", 1_000_000)


@pytest.fixture
def people(chain: Chain, request: pytest.FixtureRequest) -> Iterator[tuple[str, LocalAccount]]:
    payee = funded_wallet(chain, f"tail-payee-{request.node.name}", 0).address.lower()
    yield payee, funded_wallet(chain, f"tail-wallet-{request.node.name}", 0)


def test_a_restored_book_pays_nothing_twice(chain: Chain, db: Database, tmp_path: Path,
                                            node_account: LocalAccount, people: tuple[str, LocalAccount]) -> None:
    payee, wallet = people
    node = Node(db, chain, node_account)
    node.book.post(Transfer.move(f"draw:{payee}", "draw", "credits", Accounts.wallet("0x" + "a1" * 20),
                                 Accounts.payee(payee), OWED, model_id="m"))
    node.book.post(Transfer.move(f"deposit:{wallet.address}", "deposit", "credits", Accounts.wallet(wallet.address),
                                 Accounts.credits(wallet.address), CREDITS, payer=wallet.address.lower()))
    assert node.money.check().ok  # the tail starts its cursor here (nothing sent yet)
    balances = lambda: chain.balances(to_checksum_address(payee), wallet.address)  # noqa: E731
    start = balances()

    backup = copy_of(db, tmp_path)  # the older backup
    live = Node(Database(db.url), chain, node_account)
    assert live.payouts.run().paid and live.credits.refund(wallet.address)[0] == CREDITS
    paid = balances()
    assert [b - a for a, b in zip(start, paid, strict=True)] == [OWED, CREDITS]
    assert live.money.check().ok, live.money.check().differences  # the live book holds both

    restored = Node(Database(backup), chain, node_account)  # a restore of the older backup, then a start
    report = restored.money.check()
    named = " ".join(report.differences)
    assert not report.ok and payee in named and wallet.address.lower() in named, report.differences
    assert len(report.tail["outgoing"]) == 2  # type: ignore[index]
    held = restored.payouts.run()
    assert held.held and not held.paid  # the payee is owed again in the restored book: not paid again
    with pytest.raises(BookBehindChain) as refused:
        restored.credits.refund(wallet.address)
    assert refused.value.code == "book_behind_chain"
    assert balances() == paid

    done = restored.money.replay()
    assert not done["held"] and len(done["booked"]) == 2
    kinds = {entry["to"]: entry["as"] for entry in done["booked"]}
    assert kinds == {payee: {"payout:m": str(OWED)}, wallet.address.lower(): {"refund": str(CREDITS)}}
    after = restored.money.check()
    assert after.ok, after.differences
    assert restored.payouts.run().paid == {}  # nothing owed any more
    with pytest.raises(UsageError, match="no credits to refund"):
        restored.credits.refund(wallet.address)
    assert balances() == paid


def test_what_the_book_did_not_owe_comes_from_the_node_and_stakes_are_its_own(
        chain: Chain, db: Database, node_account: LocalAccount, people: tuple[str, LocalAccount]) -> None:
    """A transfer beyond what the book owed its recipient (revenue a restore lost, or the operator's own) is
    booked from the node's own funds; a transfer to one of the node's own contracts is not the book's."""
    payee, _ = people
    contract = funded_wallet(chain, f"tail-contract-{payee}", 0).address
    book = Book(db)
    book.post(Transfer.move(f"draw:{payee}", "draw", "credits", Accounts.wallet("0x" + "a1" * 20),
                            Accounts.payee(payee), 1_000, model_id="m"))
    tail = ChainTail(book, chain.client, chain.usdc.address, node_account.address, own=(contract,))
    assert not tail.scan().outgoing
    chain.usdc.transfer(to_checksum_address(payee), 2_500, node_account)  # sent by hand, beyond the book
    chain.usdc.transfer(contract, 400, node_account)  # a stake
    funder = funded_wallet(chain, f"tail-funder-{payee}", 900)
    chain.usdc.transfer(node_account.address, 900, funder)  # an operator funds the node: never blocking
    report = tail.scan()
    assert [(m.target, m.amount) for m in report.outgoing] == [(payee, 2_500)]
    assert [(m.source, m.amount) for m in report.incoming] == [(funder.address.lower(), 900)]
    with pytest.raises(BookBehindChain):
        tail.gate()
    done: dict[str, Any] = tail.replay()
    assert done["booked"][0]["as"] == {"payout:m": "1000", "beyond_book": "1500"}
    assert book.balance(Accounts.payee(payee)).posted == 0
    assert not tail.held and not book.check()
    tail.gate()  # nothing held: the node pays again
