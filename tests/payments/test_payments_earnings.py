"""An owner's revenue by rail and by day, from the book: what calls earned its models' payees (credited as owed, or
paid straight on chain by an x402 capture); a payout of what was earned, a deposit or a purchase is not revenue."""

from __future__ import annotations

from pathlib import Path

from proofmarket.db.book import Accounts, Book, Transfer
from proofmarket.db.engine import Database
from proofmarket.payments.earnings import earnings

OWNER, PAYER = "0x" + "0a" * 20, "0x" + "0b" * 20
MODEL, OTHER = "model-a", "model-b"


def test_revenue_is_split_by_rail_and_day_and_payouts_are_not_counted_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'book.db'}")
    db.migrate()
    book = Book(db)
    moves = [
        Transfer.move("deposit:1", "deposit", "credits", Accounts.wallet(PAYER), Accounts.credits(PAYER), 1_000),
        Transfer.move("draw:1", "draw", "credits", Accounts.credits(PAYER), Accounts.payee(OWNER), 300,
                      model_id=MODEL),
        Transfer.move("x402:1", "capture", "x402", Accounts.wallet(PAYER), Accounts.wallet(OWNER), 50, model_id=MODEL),
        Transfer.move("payout:1", "payout", "payout", Accounts.payee(OWNER), Accounts.wallet(OWNER), 300,
                      model_id=MODEL),
        Transfer.move("draw:2", "draw", "credits", Accounts.credits(PAYER), Accounts.payee(OWNER), 200,
                      model_id=OTHER),  # another owner's model: not in this owner's list
    ]
    for move in moves:
        book.post(move)
    doc = earnings(book, [MODEL])
    assert doc["by_rail"] == {"credits": "300", "x402": "50"}
    days = {row.created_at.date().isoformat() for ref in ("draw:1", "x402:1") if (row := book.transfer(ref))}
    assert [d["day"] for d in doc["by_day"]] == sorted(days)  # the days the calls were captured (UTC)
    assert sum(int(d["revenue"]) for d in doc["by_day"]) == 350
    assert earnings(book, [])["by_rail"] == {}
    assert book.check() == []
