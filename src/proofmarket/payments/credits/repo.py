"""The ``credits`` rail's rows (``payments/credits/tables.py``): keys by hash, its journal and passes.

The money is in the book (``db/book.py``), posted in the same database transaction as each journal entry:

    purchase, deposit   wallet:<payer> -> credits:<payer>
    draw                credits:<payer> -> payee:<the model's payee>   (what the call used)
    refund              credits:<payer> -> wallet:<payer>
    pass bought         wallet:<payer> -> pass:<id>
    pass call           pass:<id> -> payee:<the model's payee>         (the pass's price per call)
A wallet's credits balance is its ``credits:`` account in the book.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from proofmarket.core.errors import PaymentSettlementFailed
from proofmarket.db.book import Accounts, Book, LedgerError, Transfer
from proofmarket.db.engine import Database
from proofmarket.db.tables import utcnow
from proofmarket.payments.credits.tables import ApiKeyRow, CreditEntryRow, CreditPassRow, FreeQuotaRow

CREDITS_IN = ("purchase", "deposit")
CREDITS_OUT = ("draw", "refund")
RAIL = "credits"


def money_of(wallet: str, kind: str, amount: int, ref: str, model_id: str | None,
             pay_to: str | None, tx_hash: str | None = None) -> Transfer | None:
    """The book transfer of a journal entry (None: it moves no value: a free call, a void, a pass call counted)."""
    if amount <= 0 or kind not in (*CREDITS_IN, *CREDITS_OUT) or kind in ("purchase", "refund"):
        return None  # a purchase and a refund are pending transfers of their own (``purchases.py``, ``hold_refund``)
    credits, outside = Accounts.credits(wallet), Accounts.wallet(wallet)
    if kind in CREDITS_IN:
        source, target = outside, credits
    elif kind == "refund":
        source, target = credits, outside
    else:
        source, target = credits, Accounts.payee(pay_to) if pay_to else Accounts.PLATFORM
    return Transfer.move(f"credits:{ref}", kind, RAIL, source, target, amount, model_id=model_id, payer=wallet,
                         tx_hash=tx_hash)


class CreditsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.book = Book(db)

    # --- keys ------------------------------------------------------------------------------------
    def add_key(self, key_id: str, wallet: str, key_hash: str, models: list[str] | None, cap_atomic: int | None,
                expires_at: datetime | None) -> ApiKeyRow:
        with self.db.session() as s:
            row = ApiKeyRow(id=key_id, wallet=wallet.lower(), key_hash=key_hash, models=models, cap_atomic=cap_atomic,
                            spent_atomic=0, expires_at=expires_at, created_at=utcnow())
            s.add(row)
            return row

    def key_by_hash(self, key_hash: str) -> ApiKeyRow | None:
        with self.db.session() as s:
            return s.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash)).first()

    def keys_of(self, wallet: str) -> list[ApiKeyRow]:
        with self.db.session() as s:
            return list(s.scalars(select(ApiKeyRow).where(ApiKeyRow.wallet == wallet.lower())
                                  .order_by(ApiKeyRow.created_at)))

    def revoke(self, key_id: str, wallet: str) -> bool:
        with self.db.session() as s:
            res = s.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.wallet == wallet.lower(),
                                                    ApiKeyRow.revoked_at.is_(None)).values(revoked_at=utcnow()))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    # --- the ledger ------------------------------------------------------------------------------
    def add(self, wallet: str, kind: str, amount: int, ref: str, *, key_id: str | None = None,
            model_id: str | None = None, job_id: str | None = None, pay_to: str | None = None,
            spent_delta: int = 0, session: Session | None = None,
            tx_hash: str | None = None) -> tuple[CreditEntryRow, bool]:
        """Append an entry once per ``ref``, with its transfer in the book: (the entry, True) or (the entry already
        there, False). ``spent_delta`` moves its key's spent total in the same transaction (a draw: what it used
        minus the ceiling reserved); ``pay_to`` is whom a draw pays (the model's payee)."""
        try:
            with (nullcontext(session) if session is not None else self.db.write_session()) as s:
                key = s.get(ApiKeyRow, key_id, with_for_update=True) if kind == "draw" and key_id else None
                if kind == "draw" and s.scalars(select(CreditEntryRow.id).where(
                        CreditEntryRow.ref == f"{ref}:void")).first() is not None:
                    raise PaymentSettlementFailed("this call's payment was released (the call failed): nothing is "
                                                  "drawn", ref=ref)
                row = CreditEntryRow(wallet=wallet.lower(), kind=kind, amount=amount, ref=ref, key_id=key_id,
                                     model_id=model_id, job_id=job_id, created_at=utcnow())
                s.add(row)
                if spent_delta and key is not None:
                    key.spent_atomic = max(0, key.spent_atomic + spent_delta)
                s.flush()
                money = money_of(wallet, kind, amount, ref, model_id, pay_to, tx_hash)
                if money is not None:
                    self.book.post(money, session=s)
                return row, True
        except IntegrityError:
            found = self.entry(ref)
            if found is None:
                raise
            return found, False

    def reserve_cap(self, key_id: str, amount: int) -> int | None:
        """Count ``amount`` (a call's ceiling) in the key's spent total: None, or what it has spent and holds when
        its cap does not take ``amount`` more (nothing changes then). Called under the wallet's funds lock."""
        with self.db.session() as s:
            key = s.get(ApiKeyRow, key_id, with_for_update=True)
            if key is None:
                return 0
            if key.cap_atomic is not None and key.spent_atomic + amount > key.cap_atomic:
                return int(key.spent_atomic)
            key.spent_atomic = key.spent_atomic + amount
            return None

    def release_cap(self, key_id: str, amount: int, ref: str) -> None:
        """Give back a reservation of ``reserve_cap`` for the call ``ref`` that did not run, once (a ``void`` entry
        of 0 marks it)."""
        try:
            with self.db.session() as s:
                key = s.get(ApiKeyRow, key_id, with_for_update=True)
                if s.scalars(select(CreditEntryRow.id).where(CreditEntryRow.ref == ref)).first() is not None:
                    return  # drawn already: the draw turned the reservation into what the call used
                s.add(CreditEntryRow(wallet=key.wallet if key else "", kind="void", amount=0, ref=f"{ref}:void",
                                     key_id=key_id, created_at=utcnow()))
                s.flush()
                if key is not None:
                    key.spent_atomic = max(0, key.spent_atomic - amount)
        except IntegrityError:
            return  # given back already

    def drop_reservation(self, ref: str) -> None:
        """Delete the free or pass call ``ref`` reserved (the call did not run: it is not counted)."""
        with self.db.session() as s:
            s.execute(delete(CreditEntryRow).where(CreditEntryRow.ref == ref,
                                                   CreditEntryRow.kind.in_(("free", "pass"))))

    def entry(self, ref: str) -> CreditEntryRow | None:
        with self.db.session() as s:
            return s.scalars(select(CreditEntryRow).where(CreditEntryRow.ref == ref)).first()

    def drawn(self, refs: list[str]) -> set[str]:
        """Which of ``refs`` have an entry (the calls of these payment nonces drew, or took their free call)."""
        if not refs:
            return set()
        with self.db.session() as s:
            return set(s.scalars(select(CreditEntryRow.ref).where(CreditEntryRow.ref.in_(refs))))

    def entries(self, wallet: str | None = None, limit: int = 1000, key_id: str | None = None) -> list[CreditEntryRow]:
        with self.db.session() as s:
            query = select(CreditEntryRow)
            if wallet is not None:
                query = query.where(CreditEntryRow.wallet == wallet.lower())
            if key_id is not None:
                query = query.where(CreditEntryRow.key_id == key_id)
            return list(s.scalars(query.order_by(CreditEntryRow.id.desc()).limit(limit)))

    def balance(self, wallet: str) -> int:
        """What the wallet bought or deposited, minus what it drew and what is refunded or on its way back (its
        account in the book, less what an open refund holds)."""
        return self.book.balance(Accounts.credits(wallet)).available

    # --- refunds: pending until the transfer back is mined --------------------------------------
    def hold_refund(self, wallet: str, amount: int, ref: str) -> None:
        """The journal entry and a pending transfer of ``amount`` from the wallet's credits back to it (held: no
        call spends it; captured once the transfer is mined, voided if it was never sent)."""
        with self.db.write_session() as s:
            s.add(CreditEntryRow(wallet=wallet.lower(), kind="refund", amount=amount, ref=ref, created_at=utcnow()))
            s.flush()
            self.book.hold(Transfer.move(f"credits:{ref}", "refund", RAIL, Accounts.credits(wallet),
                                         Accounts.wallet(wallet), amount, payer=wallet), session=s)

    def refund_sent(self, ref: str, *tx_hashes: str, mined: bool = False) -> None:
        """The transfer back was sent in ``tx_hashes``: captured now when ``mined`` (its receipt came), else the
        settler confirms it as it does a payout."""
        self.book.note_tx(f"credits:{ref}", *tx_hashes)
        if mined:
            self.book.capture(f"credits:{ref}", tx_hash=tx_hashes[-1])

    def refund_unknown(self, ref: str) -> None:
        """The transfer back may have left with no hash known: the credits stay held; the ledger check names it."""
        self.book.note_outcome_unknown(f"credits:{ref}")

    def refund_failed(self, ref: str, reason: str) -> None:
        """Never sent: the hold goes (the credits are the wallet's again), the journal says so."""
        with self.db.write_session() as s:
            self.book.void(f"credits:{ref}", reason=reason, session=s)
            s.add(CreditEntryRow(wallet="", kind="void", amount=0, ref=f"{ref}:undone", created_at=utcnow()))

    # --- free quotas and passes ------------------------------------------------------------------
    def set_free_quota(self, model_id: str, calls_per_day: int, owner: str, total_per_day: int) -> None:
        with self.db.session() as s:
            row = s.get(FreeQuotaRow, model_id)
            if calls_per_day <= 0 or total_per_day <= 0:
                if row is not None:
                    s.delete(row)
                return
            if row is None:
                s.add(FreeQuotaRow(model_id=model_id, calls_per_day=calls_per_day, total_per_day=total_per_day,
                                   set_by=owner.lower(), updated_at=utcnow()))
            else:
                row.calls_per_day, row.total_per_day = calls_per_day, total_per_day
                row.set_by, row.updated_at = owner.lower(), utcnow()

    def free_quota(self, model_id: str) -> tuple[int, int]:
        """(free calls per payer wallet, free calls of every payer together) a day; (0, 0): no free tier."""
        with self.db.session() as s:
            row = s.get(FreeQuotaRow, model_id)
            if row is None:
                return 0, 0
            return row.calls_per_day, row.total_per_day if row.total_per_day is not None else row.calls_per_day

    def free_calls(self, model_ids: list[str], since: datetime) -> dict[str, int]:
        """Free calls taken on each model since ``since`` (what an owner's free tier gave away)."""
        if not model_ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(select(CreditEntryRow.model_id, func.count()).where(
                CreditEntryRow.kind == "free", CreditEntryRow.model_id.in_(model_ids),
                CreditEntryRow.created_at >= since).group_by(CreditEntryRow.model_id)).all()
        return {str(m): int(n) for m, n in rows}

    def free_since(self, wallet: str, since: datetime) -> bool:
        """Did the wallet take a free call since ``since`` (its funded balance is then held: not refundable)."""
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(CreditEntryRow).where(
                CreditEntryRow.kind == "free", CreditEntryRow.wallet == wallet.lower(),
                CreditEntryRow.created_at >= since)) != 0

    def used_today(self, kind: str, *, key_id: str | None = None, wallet: str | None = None,
                   model_id: str | None = None, ref_prefix: str | None = None) -> int:
        """Entries of ``kind`` since the start of this UTC day (free calls of a key on a model, a pass's calls)."""
        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        with self.db.session() as s:
            query = select(func.count()).select_from(CreditEntryRow).where(CreditEntryRow.kind == kind,
                                                                           CreditEntryRow.created_at >= day)
            if key_id is not None:
                query = query.where(CreditEntryRow.key_id == key_id)
            if wallet is not None:
                query = query.where(CreditEntryRow.wallet == wallet.lower())
            if model_id is not None:
                query = query.where(CreditEntryRow.model_id == model_id)
            if ref_prefix is not None:
                query = query.where(CreditEntryRow.ref.startswith(ref_prefix, autoescape=True))
            return int(s.scalar(query) or 0)

    def add_pass(self, wallet: str, model_id: str | None, calls_per_day: int, days: int, ref: str,
                 session: Session | None = None) -> CreditPassRow:
        """A pass (once per ``ref``: the purchase that bought it; its money is the book's ``pass:<ref>`` account)."""
        now = utcnow()
        with (nullcontext(session) if session is not None else self.db.session()) as s:
            found = s.scalars(select(CreditPassRow).where(CreditPassRow.ref == ref)).first()
            if found is not None:
                return found
            row = CreditPassRow(wallet=wallet.lower(), model_id=model_id, calls_per_day=calls_per_day, starts_at=now,
                                ends_at=now + timedelta(days=days), ref=ref, created_at=now)
            s.add(row)
            s.flush()
            return row

    def pay_pass_call(self, ref: str, pass_ref: str, wallet: str, model_id: str, pay_to: str | None) -> int:
        """The pass's price per call from its account to the called model's payee, once per call ``ref`` (never more
        than the pass holds): what moved."""
        account = Accounts.pass_(pass_ref)
        bought = self.book.transfers(accounts=[account], kinds=["purchase"], limit=1)
        per_call = int((bought[0].memo or {}).get("per_call", 0)) if bought else 0
        for _ in range(3):  # another call of the pass may take its last units between the read and the write
            amount = min(per_call, self.book.balance(account).available)
            if amount <= 0:
                return 0
            try:
                self.book.post(Transfer.move(f"pass-call:{ref}", "pass-call", RAIL, account,
                                             Accounts.payee(pay_to) if pay_to else Accounts.PLATFORM, amount,
                                             model_id=model_id, payer=wallet))
                return amount
            except LedgerError:
                continue
        return 0

    def close_ended_passes(self, limit: int = 500) -> int:
        """What ended passes did not spend goes to the platform (their calls are over), once per pass: how many."""
        now = utcnow()
        with self.db.session() as s:
            ended = [r.ref for r in s.scalars(select(CreditPassRow).where(CreditPassRow.ends_at <= now)
                                              .order_by(CreditPassRow.id).limit(limit))]
        closed = 0
        for ref in ended:
            account = Accounts.pass_(ref)
            left = self.book.balance(account).available
            if left > 0 and self.book.transfer(f"pass-ended:{ref}") is None:
                self.book.post(Transfer.move(f"pass-ended:{ref}", "pass-ended", RAIL, account, Accounts.PLATFORM,
                                             left, memo={"pass": ref}))
                closed += 1
        return closed

    def pass_by_ref(self, ref: str) -> CreditPassRow | None:
        with self.db.session() as s:
            return s.scalars(select(CreditPassRow).where(CreditPassRow.ref == ref)).first()

    def passes(self, wallet: str, model_id: str | None = None) -> list[CreditPassRow]:
        """The wallet's live passes (for ``model_id``: its own and those for any model)."""
        now = utcnow()
        with self.db.session() as s:
            query = select(CreditPassRow).where(CreditPassRow.wallet == wallet.lower(), CreditPassRow.ends_at > now)
            rows = list(s.scalars(query.order_by(CreditPassRow.id)))
        return [r for r in rows if model_id is None or r.model_id in (None, model_id)]
