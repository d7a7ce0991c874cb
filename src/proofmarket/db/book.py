"""The book: one double-entry ledger for every movement of value, in integer atomic units.

A **transfer** is a balanced set of postings (their amounts sum to zero) between named accounts, written once per
``ref`` (a second write of the same ref returns the first: a retried capture never posts twice; a second
write with other postings under a ref already taken is refused). Two phases, in the
spirit of TigerBeetle's pending transfers and a card network's authorize/capture:

    post(t)                  a single-phase transfer: posted at once
    hold(t)                  a pending transfer: its debits are held (no other transfer may spend them), nothing moves
    capture(pending_ref)     posts what a pending transfer holds (optionally less: a metered call), once
    void(pending_ref)        releases what it holds: nothing moved

Accounts (``Accounts`` names them): ``wallet:<address>`` is the outside world (an address on chain: the only kind of
account that may go below zero, by what it paid in); every other account (a payer's credits, a pass, what is owed
to a payee, the platform, what a market contract credited a payee to withdraw) must never go below zero counting
what its open pending transfers hold.
Every function takes an optional SQLAlchemy session, so that a rail posts in the same database transaction as the
call's state change; each account's row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL, the writer lock on
SQLite) in name order, so concurrent writers on several nodes serialise per account without deadlocks.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from proofmarket.core.errors import StoreError
from proofmarket.db.book_tables import AccountRow, PostingRow, TransferRow
from proofmarket.db.engine import Database
from proofmarket.db.tables import utcnow

EXTERNAL = "wallet:"


class LedgerError(StoreError, code="ledger_error", http_status=500):
    """A transfer the book refuses: unbalanced, taking an account below zero, or closing a pending transfer twice
    (a bug or a race the caller must not hide: nothing is written)."""


class Accounts:
    """The chart of accounts: every name the book uses is made here."""

    @staticmethod
    def wallet(address: str) -> str:
        """An address on chain: the outside world (a payer's wallet, a payee, a splitter contract)."""
        return f"wallet:{address.lower()}"

    @staticmethod
    def credits(wallet: str) -> str:
        """A wallet's prepaid credits, held by the node on its behalf."""
        return f"credits:{wallet.lower()}"

    @staticmethod
    def pass_(ref: int | str) -> str:
        """What a pass was bought for and has not paid to models' payees yet (named by a digest of the purchase
        that bought it: an x402 payment's key is longer than an account name)."""
        return "pass:" + hashlib.sha256(str(ref).encode()).hexdigest()[:40]

    @staticmethod
    def payee(address: str) -> str:
        """What the node holds for a payee (a model's owner, or its listing's revenue splitter) and owes it."""
        return f"payee:{address.lower()}"

    PLATFORM = "platform"  # what no payee is owed: the unused part of an ended pass
    WITHDRAWABLE = "withdrawable:"

    @staticmethod
    def withdrawable(market: str, payee: str) -> str:
        """What a market contract credited a payee (an owner, a prover, ``platform``) and has not paid it yet: the
        payee withdraws it (``db/market_book.py``)."""
        return f"{Accounts.WITHDRAWABLE}{market.lower()}:{payee.lower()}"

    @staticmethod
    def is_external(account: str) -> bool:
        return account.startswith(EXTERNAL)

    @staticmethod
    def address_of(account: str) -> str:
        return account.split(":", 1)[1]


@dataclass(frozen=True)
class Transfer:
    """One movement of value: ``postings`` (account, signed amount) that sum to zero."""

    ref: str
    kind: str
    rail: str
    postings: tuple[tuple[str, int], ...]
    model_id: str | None = None
    payer: str | None = None
    tx_hash: str | None = None
    memo: dict[str, Any] | None = None

    @classmethod
    def move(cls, ref: str, kind: str, rail: str, source: str, target: str, amount: int, **fields: Any) -> Transfer:
        """``amount`` from ``source`` to ``target``."""
        return cls(ref, kind, rail, ((source, -amount), (target, amount)), **fields)


@dataclass(frozen=True)
class Balance:
    posted: int
    pending_debits: int
    pending_credits: int

    @property
    def available(self) -> int:
        """What the account may still spend: posted, less what open pending transfers hold."""
        return self.posted - self.pending_debits


class Book:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def _session(self, session: Session | None) -> Iterator[Session]:
        if session is not None:
            yield session
        else:
            with self.db.write_session() as s:
                yield s

    # --- writing ---------------------------------------------------------------------------------
    def post(self, transfer: Transfer, session: Session | None = None) -> tuple[TransferRow, bool]:
        """Post ``transfer`` once: (its row, True), or (the row of its ref already there, False)."""
        return self._write(transfer, "single", session)

    def hold(self, transfer: Transfer, session: Session | None = None) -> tuple[TransferRow, bool]:
        """Write ``transfer`` pending: its debits are held, nothing moves until ``capture``."""
        return self._write(transfer, "pending", session)

    def capture(self, pending_ref: str, *, tx_hash: str | None = None, postings: Sequence[tuple[str, int]] | None
                = None, session: Session | None = None) -> TransferRow:
        """Post what the pending transfer ``pending_ref`` holds (or ``postings``: no more on any account than it
        holds), once. A voided one raises ``LedgerError``."""
        with self._session(session) as s:
            pending, closed = self._open(s, pending_ref, "post")
            if closed is not None:  # closed this way before: that close, once
                return closed
            held = self._postings(s, pending.id)
            moved = tuple(postings) if postings is not None else held
            _check_within(moved, held, pending_ref)
            done = Transfer(f"{pending_ref}:post", pending.kind, pending.rail, moved, pending.model_id, pending.payer,
                            tx_hash or pending.tx_hash, pending.memo)
            return self._insert(s, done, "post", pending_ref, release=held)

    def void(self, pending_ref: str, *, reason: str | None = None, note: dict[str, Any] | None = None,
             session: Session | None = None) -> TransferRow:
        """Release what the pending transfer ``pending_ref`` holds (nothing moved), once (``note``: more of why, in
        the void's memo). A captured one raises."""
        with self._session(session) as s:
            pending, closed = self._open(s, pending_ref, "void")
            if closed is not None:  # closed this way before: that close, once
                return closed
            held = self._postings(s, pending.id)
            memo = {**(pending.memo or {}), **({"reason": reason} if reason else {}), **(note or {})}
            done = Transfer(f"{pending_ref}:void", pending.kind, pending.rail, (), pending.model_id, pending.payer,
                            pending.tx_hash, memo or pending.memo)
            return self._insert(s, done, "void", pending_ref, release=held)

    def note_tx(self, pending_ref: str, *tx_hashes: str, session: Session | None = None) -> None:
        """Remember the transactions a pending transfer's settlement was sent in (each re-send of one payment has
        its own hash; the memo, not the postings)."""
        def add(memo: dict[str, Any]) -> dict[str, Any]:
            known = list(memo.get("sent_txs") or [])
            return {**memo, "sent_txs": known + [t for t in tx_hashes if t and t not in known]}

        self._annotate(pending_ref, add, session)

    def note_outcome_unknown(self, pending_ref: str, session: Session | None = None) -> None:
        """A pending transfer whose transaction may have left with no hash known (an RPC failure while sending):
        never voided by a machine; the ledger check names it."""
        self._annotate(pending_ref, lambda memo: {**memo, "outcome_unknown": True}, session)

    def _annotate(self, pending_ref: str, change: Callable[[dict[str, Any]], dict[str, Any]],
                  session: Session | None) -> None:
        """Change an open pending transfer's memo (what is known of its settlement; never its postings)."""
        with self._session(session) as s:
            row = s.scalars(select(TransferRow).where(TransferRow.ref == pending_ref)).first()
            if row is not None and row.phase == "pending":
                row.memo = change(dict(row.memo or {}))

    def _write(self, transfer: Transfer, phase: str, session: Session | None) -> tuple[TransferRow, bool]:
        _check_balanced(transfer)
        try:
            with self._session(session) as s:
                found = s.scalars(select(TransferRow).where(TransferRow.ref == transfer.ref)).first()
                if found is not None:
                    self._same(s, found, transfer, phase)
                    return found, False
                return self._insert(s, transfer, phase), True
        except IntegrityError:  # written by another writer meanwhile (in the caller's session: the caller's to see)
            if session is None and (found := self.transfer(transfer.ref)) is not None:
                with self.db.session() as s:
                    self._same(s, found, transfer, phase)
                return found, False
            raise

    def _same(self, s: Session, found: TransferRow, transfer: Transfer, phase: str) -> None:
        """A second write of a ``ref`` is the first one again (a retry) only with the same kind, phase and postings;
        anything else is another movement of value under a reference already taken: ``LedgerError``."""
        if (found.kind, found.phase) != (transfer.kind, phase) or \
                sorted(self._postings(s, found.id)) != sorted(transfer.postings):
            raise LedgerError(f"the reference {transfer.ref} is taken by another transfer ({found.kind}, "
                              f"{found.phase}): a retry must write the same postings", ref=transfer.ref)

    def _insert(self, s: Session, t: Transfer, phase: str, pending_ref: str | None = None,
                release: Sequence[tuple[str, int]] = ()) -> TransferRow:
        names = sorted({a for a, _ in t.postings} | {a for a, _ in release})
        accounts = self._accounts(s, names)
        for account, amount in release:  # the pending transfer's holds end
            row = accounts[account]
            if amount < 0:
                row.pending_debits = row.pending_debits + amount
            else:
                row.pending_credits = row.pending_credits - amount
        for account, amount in t.postings:
            row = accounts[account]
            if phase == "pending":
                if amount < 0:
                    row.pending_debits = row.pending_debits - amount
                else:
                    row.pending_credits = row.pending_credits + amount
            else:
                row.posted = row.posted + amount
        for name, row in accounts.items():
            row.updated_at = utcnow()
            if not Accounts.is_external(name) and row.posted - row.pending_debits < 0:
                raise LedgerError(f"the transfer {t.ref} would take account {name} below zero "
                                  f"({row.posted} posted, {row.pending_debits} held)", account=name, ref=t.ref)
        transfer = TransferRow(ref=t.ref, kind=t.kind, rail=t.rail, phase=phase, pending_ref=pending_ref,
                               model_id=t.model_id, payer=t.payer.lower() if t.payer else None, tx_hash=t.tx_hash,
                               memo=t.memo, created_at=utcnow())
        s.add(transfer)
        s.flush()
        if t.postings:  # one statement for all of them
            s.execute(insert(PostingRow), [{"transfer_id": transfer.id, "account": account, "amount": amount}
                                           for account, amount in t.postings])
        return transfer

    @staticmethod
    def _accounts(s: Session, names: list[str]) -> dict[str, AccountRow]:
        """The accounts' rows, locked for this transaction in name order (one read); a new one is created by an insert
        that yields to a concurrent writer creating it too (a plain insert would fail that writer's transaction)."""
        lock = select(AccountRow).where(AccountRow.name.in_(names)).order_by(AccountRow.name).with_for_update()
        found = {row.name: row for row in s.scalars(lock)}
        missing = [name for name in names if name not in found]
        if missing:
            insert_ = postgresql_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            s.execute(insert_(AccountRow).values([dict(name=n, posted=0, pending_debits=0, pending_credits=0,
                                                       updated_at=utcnow()) for n in missing])
                      .on_conflict_do_nothing(index_elements=["name"]))
            found = {row.name: row for row in s.scalars(lock.execution_options(populate_existing=True))}
        return {name: found[name] for name in names}

    @staticmethod
    def _open(s: Session, pending_ref: str, phase: str) -> tuple[TransferRow, TransferRow | None]:
        """The pending transfer (locked) and its close, if any: closed the other way (``phase``) raises."""
        pending = s.scalars(select(TransferRow).where(TransferRow.ref == pending_ref)
                            .with_for_update()).first()
        if pending is None or pending.phase != "pending":
            raise LedgerError(f"no pending transfer {pending_ref} in the book", ref=pending_ref)
        closed = s.scalars(select(TransferRow).where(TransferRow.pending_ref == pending_ref)).first()
        if closed is not None and closed.phase != phase:
            was, asked = ("voided", "captured") if phase == "post" else ("captured", "voided")
            raise LedgerError(f"the pending transfer {pending_ref} was {was}: it cannot be {asked}", ref=pending_ref)
        return pending, closed

    @staticmethod
    def _postings(s: Session, transfer_id: int) -> tuple[tuple[str, int], ...]:
        rows = s.scalars(select(PostingRow).where(PostingRow.transfer_id == transfer_id).order_by(PostingRow.id))
        return tuple((r.account, r.amount) for r in rows)

    # --- reading ---------------------------------------------------------------------------------
    def balance(self, account: str, session: Session | None = None) -> Balance:
        if session is not None:
            row = session.get(AccountRow, account)
        else:
            with self.db.session() as s:
                row = s.get(AccountRow, account)
        return Balance(0, 0, 0) if row is None else Balance(row.posted, row.pending_debits, row.pending_credits)

    def transfer(self, ref: str) -> TransferRow | None:
        with self.db.session() as s:
            return s.scalars(select(TransferRow).where(TransferRow.ref == ref)).first()

    def closing(self, pending_ref: str) -> TransferRow | None:
        """The post or void that closed ``pending_ref`` (None while it is open)."""
        with self.db.session() as s:
            return s.scalars(select(TransferRow).where(TransferRow.pending_ref == pending_ref)).first()

    def open_pending(self, kind: str | None = None, limit: int = 500) -> list[TransferRow]:
        """Pending transfers no post or void closed yet (oldest first)."""
        with self.db.session() as s:
            closed = select(TransferRow.pending_ref).where(TransferRow.pending_ref.is_not(None))
            query = select(TransferRow).where(TransferRow.phase == "pending", TransferRow.ref.not_in(closed))
            if kind is not None:
                query = query.where(TransferRow.kind == kind)
            return list(s.scalars(query.order_by(TransferRow.id).limit(limit)))

    def postings(self, transfer_ids: Iterable[int]) -> dict[int, list[tuple[str, int]]]:
        ids = list(transfer_ids)
        out: dict[int, list[tuple[str, int]]] = defaultdict(list)
        if not ids:
            return out
        with self.db.session() as s:
            for row in s.scalars(select(PostingRow).where(PostingRow.transfer_id.in_(ids)).order_by(PostingRow.id)):
                out[row.transfer_id].append((row.account, row.amount))
        return out

    def transfers(self, *, accounts: Iterable[str] | None = None, models: Iterable[str] | None = None,
                  kinds: Iterable[str] | None = None, limit: int = 500) -> list[TransferRow]:
        """Transfers touching any of ``accounts`` (or of ``models``, or of ``kinds``), newest first."""
        with self.db.session() as s:
            query = select(TransferRow)
            if accounts is not None:
                touching = select(PostingRow.transfer_id).where(PostingRow.account.in_(list(accounts)))
                query = query.where(TransferRow.id.in_(touching))
            if models is not None:
                query = query.where(TransferRow.model_id.in_(list(models)))
            if kinds is not None:
                query = query.where(TransferRow.kind.in_(list(kinds)))
            return list(s.scalars(query.order_by(TransferRow.id.desc()).limit(limit)))

    def accounts(self, prefix: str | None = None) -> dict[str, Balance]:
        with self.db.session() as s:
            query = select(AccountRow)
            if prefix is not None:
                query = query.where(AccountRow.name.startswith(prefix, autoescape=True))
            return {r.name: Balance(r.posted, r.pending_debits, r.pending_credits) for r in s.scalars(query)}

    def by_model(self, account: str) -> dict[str | None, int]:
        """What ``account`` may still spend, by the model of the transfers that filled it: posted postings, less
        what open pending transfers hold."""
        out: dict[str | None, int] = defaultdict(int)
        with self.db.session() as s:
            rows = s.execute(select(TransferRow.ref, TransferRow.phase, TransferRow.model_id, PostingRow.amount)
                             .join(PostingRow, PostingRow.transfer_id == TransferRow.id)
                             .where(PostingRow.account == account)).all()
            closed = set(s.scalars(select(TransferRow.pending_ref).where(TransferRow.pending_ref.is_not(None))))
        for ref, phase, model_id, amount in rows:
            if phase in ("single", "post") or (phase == "pending" and ref not in closed and amount < 0):
                out[model_id] += amount
        return {m: a for m, a in out.items() if a}

    # --- conservation ----------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Every difference between the book and its own rules (``book_check.check_book``). Empty: the book holds."""
        from proofmarket.db.book_check import check_book

        return check_book(self.db)


def _check_balanced(transfer: Transfer) -> None:
    if sum(amount for _, amount in transfer.postings) != 0:
        raise LedgerError(f"the transfer {transfer.ref} does not balance", ref=transfer.ref)
    if any(not isinstance(amount, int) or isinstance(amount, bool) for _, amount in transfer.postings):
        raise LedgerError(f"the transfer {transfer.ref} has an amount that is not a whole number of atomic units",
                          ref=transfer.ref)


def _check_within(moved: Sequence[tuple[str, int]], held: Sequence[tuple[str, int]], ref: str) -> None:
    if sum(a for _, a in moved) != 0:
        raise LedgerError(f"the capture of {ref} does not balance", ref=ref)
    limit: dict[str, int] = defaultdict(int)
    for account, amount in held:
        limit[account] += amount
    for account, amount in moved:
        bound = limit.get(account)
        if bound is None or (amount < 0 and amount < bound) or (amount > 0 and amount > bound) or \
                (amount != 0 and (amount > 0) != (bound > 0)):
            raise LedgerError(f"the capture of {ref} moves {amount} on {account}, beyond what it holds", ref=ref)
