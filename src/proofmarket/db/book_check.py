"""The book's conservation check (``Book.check``, ``proofmarket ledger check``): the ledger against its own rules, in
one snapshot."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from proofmarket.db.book import Accounts
from proofmarket.db.book_tables import AccountRow, PostingRow, TransferRow
from proofmarket.db.engine import Database


def check_book(db: Database) -> list[str]:
    """Every difference between the book and its own rules: a transfer whose postings do not sum to zero, an
    account whose running balance is not the sum of its postings (posted, and held by open pending transfers),
    an account other than a wallet below zero. Empty: the book holds."""
    problems: list[str] = []
    posted: dict[str, int] = defaultdict(int)
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    with db.snapshot_session() as s:  # one snapshot: writers on other nodes cannot fool the check
        transfers = {t.id: (t.ref, t.phase, t.pending_ref) for t in s.scalars(select(TransferRow))}
        closed = {pending_ref for _, _, pending_ref in transfers.values() if pending_ref}
        sums: dict[int, int] = defaultdict(int)
        for p in s.scalars(select(PostingRow)):
            ref, phase, _ = transfers[p.transfer_id]
            sums[p.transfer_id] += p.amount
            if phase in ("single", "post"):
                posted[p.account] += p.amount
            elif phase == "pending" and ref not in closed:
                (debits if p.amount < 0 else credits)[p.account] += abs(p.amount)
        rows = {r.name: (r.posted, r.pending_debits, r.pending_credits) for r in s.scalars(select(AccountRow))}
    problems += [f"transfer {transfers[i][0]} does not balance: its postings sum to {total}"
                 for i, total in sorted(sums.items()) if total != 0]
    for name in sorted(set(rows) | set(posted) | set(debits) | set(credits)):
        have = rows.get(name, (0, 0, 0))
        want = (posted[name], debits[name], credits[name])
        if have != want:
            problems.append(f"account {name}: its balance (posted, held, incoming) is {have}, its postings say "
                            f"{want}")
        if not Accounts.is_external(name) and want[0] - want[1] < 0:
            problems.append(f"account {name} is below zero: {want[0]} posted, {want[1]} held")
    return problems
