"""The market's payouts in the book: fulfilments and split releases credit each payee's withdrawable balance,
withdrawals move it to the payee's wallet, a payee the token refuses stays withdrawable (the others are paid), and
the book reconciles with the chain's token transfers (MockVerifier, a real anvil)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chain_helpers import PRICE, Chain, Listed
from test_chain_market import INPUT, OUTPUT, VALID, fulfil, open_request

from proofmarket.chain import EventWatcher
from proofmarket.db import Database
from proofmarket.db.book import Accounts, Book
from proofmarket.db.market_book import MarketBook
from proofmarket.payments.earnings import withdrawals
from proofmarket.payments.reconcile import reconcile

pytestmark = pytest.mark.chain


class Follower:
    """The escrow watcher's booking, alone: the market's events from ``start`` into a fresh book."""

    def __init__(self, chain: Chain, db_path: Path, start: int) -> None:
        self.chain = chain
        db = Database(f"sqlite:///{db_path}")
        db.migrate()
        self.book = Book(db)
        self.events = EventWatcher(chain.client, {"market": chain.market}, from_block=start, confirmations=0)
        market = chain.market

        def parties(request_id: int) -> tuple[str, str]:
            onchain = market.get_request(request_id)
            assert onchain.terms is not None
            return onchain.consumer, onchain.terms.owner

        self.payouts = MarketBook(self.book, chain.client.chain_id, market.address, parties, market.splitter_for,
                                  lambda _: "m1")

    def follow(self) -> int:
        booked = 0
        while batch := self.events.poll():
            booked += sum(self.payouts.record(e) is not None for e in batch)
        return booked

    def held(self, payee: str) -> dict[str, int]:
        return {k: int(v) for k, v in withdrawals(self.book, payee).items()}


def test_a_refused_payee_stays_withdrawable_in_the_book_and_the_others_are_withdrawn(
        chain: Chain, model: Listed, tmp_path: Path) -> None:
    a, market, usdc = chain.accounts, chain.market, chain.usdc
    market.withdraw([a.owner.address, a.prover.address], a.stranger)  # start from nothing owed
    start = chain.client.block_number() + 1
    follower = Follower(chain, tmp_path / "book.db", start)
    fee = PRICE * market.platform_fee_bps() // 10_000
    owner_amount = PRICE * 7_000 // 10_000
    prover_amount = PRICE - fee - owner_amount
    # an escrow fulfilment credits (nothing is paid yet)
    request_id = open_request(chain, model)
    fulfil(chain, request_id, VALID, INPUT + OUTPUT)
    # an x402 payment to the splitter, released while the token refuses the owner
    splitter = market.splitter_for(model.key, a.prover.address)
    usdc.transfer(splitter, PRICE, a.consumer)
    block = usdc.contract.functions.setBlocked
    chain.client.transact(block(a.owner.address, True), a.admin)
    try:
        released = market.release_split(model.key, a.prover.address, a.stranger)
        assert released.skipped == {a.owner.address: 2 * owner_amount}
        batch = market.withdraw([a.owner.address, a.prover.address], a.stranger)
        assert batch.skipped == {a.owner.address: 2 * owner_amount} and batch.paid == {}
    finally:
        chain.client.transact(block(a.owner.address, False), a.admin)
    assert follower.follow() == 3  # the fulfilment, the release, the prover's withdrawal inside it
    assert follower.held(a.owner.address) == {"withdrawable": 2 * owner_amount, "withdrawn": 0}
    assert follower.held(a.prover.address) == {"withdrawable": 0, "withdrawn": 2 * prover_amount}
    platform = Accounts.withdrawable(market.address, "platform")
    assert follower.book.balance(platform).posted == 2 * fee
    [fulfilment] = follower.book.transfers(kinds=["fulfil"])
    assert fulfilment.ref == f"escrow:{chain.client.chain_id}:{market.address.lower()}:{request_id}"
    assert fulfilment.payer == a.consumer.address.lower() and fulfilment.model_id == "m1"
    # the owner, unblocked, withdraws: withdrawn in the book; the platform's fees leave with withdrawPlatform
    market.withdraw([a.owner.address], a.stranger)
    market.withdraw_platform(a.admin.address, 2 * fee, a.admin)
    assert follower.follow() == 2
    assert follower.held(a.owner.address) == {"withdrawable": 0, "withdrawn": 2 * owner_amount}
    assert follower.book.balance(platform).posted == 0
    # every transfer balances, and matches the token transfers of its transaction
    report = reconcile(follower.book, chain.client, usdc.address, "0x" + "00" * 20)
    assert report.ok, report.differences
    assert report.transactions_checked == 4  # release, the owner's withdrawal, the platform's, the fulfilment
    # read again from the start: nothing is booked twice
    transfers = len(follower.book.transfers(limit=1000))
    follower.events.next_block = start
    assert follower.follow() == 5 and len(follower.book.transfers(limit=1000)) == transfers

def test_a_withdrawal_of_credits_the_book_never_saw_comes_from_the_market(
        chain: Chain, model: Listed, tmp_path: Path) -> None:
    a, market = chain.accounts, chain.market
    market.withdraw([a.owner.address, a.prover.address], a.stranger)
    fulfil(chain, open_request(chain, model), VALID, INPUT + OUTPUT)  # before the book follows the market
    follower = Follower(chain, tmp_path / "late.db", chain.client.block_number() + 1)
    owed = market.owed(a.owner.address)
    market.withdraw([a.owner.address], a.stranger)
    assert follower.follow() == 1
    [withdrawal] = follower.book.transfers(kinds=["withdrawal"])
    assert withdrawal.memo == {"unbooked_credit": owed}
    assert dict(follower.book.postings([withdrawal.id])[withdrawal.id]) == {
        Accounts.wallet(market.address): -owed, Accounts.wallet(a.owner.address): owed}
    assert follower.book.check() == []
