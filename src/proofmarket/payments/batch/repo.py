"""The ``batch-settlement`` rail's rows (``tables.py``): channel state by compare-and-swap, one charge per
voucher, sweeps and their per-payee allocations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from proofmarket.core.errors import DatabaseError
from proofmarket.db.book import Accounts, Book, LedgerError, Transfer
from proofmarket.db.engine import Database
from proofmarket.db.tables import utcnow
from proofmarket.payments.batch.tables import ChannelChargeRow, ChannelRow, ChannelSweepRow

State = dict[str, Any]
# the next state of a channel from its current one (None: no row yet); return the same object: unchanged
StateUpdate = Callable[[State | None], State | None]
CAS_ATTEMPTS = 50


@dataclass(frozen=True)
class NewCharge:
    """One call charged on a channel: stored with the channel's new state, in one transaction."""

    ticket: str
    channel_id: str
    job_id: str
    model_id: str
    pay_to: str
    amount: int
    cumulative: int
    receipt: dict[str, Any] | None = None


def charge_transfer(charge: NewCharge, payer: str) -> Transfer:
    """A charge in the book: from the payer's wallet (its channel, in the contract) to what the node owes the
    model's payee, pending until claimed."""
    return Transfer.move(f"charge:{charge.ticket}", "charge", "batch-settlement", Accounts.wallet(payer),
                         Accounts.payee(charge.pay_to), charge.amount, model_id=charge.model_id, payer=payer,
                         memo={"channel_id": charge.channel_id.lower(), "cumulative": str(charge.cumulative)})


class ChannelRepo:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.book = Book(db)

    def get(self, channel_id: str) -> State | None:
        return self.read(channel_id)[0]

    def read(self, channel_id: str) -> tuple[State | None, str | None]:
        """The channel's state and why the chain refused it (None: it did not), in one read."""
        with self.db.session() as s:
            found = s.execute(select(ChannelRow.state, ChannelRow.refused)
                              .where(ChannelRow.channel_id == channel_id.lower())).first()
        return (dict(found.state), found.refused) if found is not None else (None, None)

    def all(self, payer: str | None = None) -> list[State]:
        with self.db.session() as s:
            query = select(ChannelRow)
            if payer is not None:
                query = query.where(ChannelRow.payer == payer.lower())
            return [dict(r.state) for r in s.scalars(query.order_by(ChannelRow.channel_id))]

    def update(self, channel_id: str, change: StateUpdate,
               charge: Callable[[State], NewCharge | None] | None = None) -> tuple[State | None, bool]:
        """Apply ``change`` to the channel's state atomically: read and written in one write transaction (the row
        locked where the database locks rows; a compare-and-swap on its version all the same, retried when another
        process changed it meanwhile); ``charge(new_state)`` names a charge row stored in the same transaction.
        Returns (state, changed). A charge whose ticket is already stored raises ``IntegrityError``."""
        key = channel_id.lower()
        for _ in range(CAS_ATTEMPTS):
            found = None
            try:
                with self.db.write_session() as s:
                    found = s.execute(select(ChannelRow.state, ChannelRow.version)
                                      .where(ChannelRow.channel_id == key).with_for_update()).first()
                    current = dict(found.state) if found is not None else None
                    proposed = change(current)
                    if proposed is current:
                        return current, False
                    if proposed is None:
                        raise ValueError("a channel's state is never deleted")
                    if found is None:
                        s.add(ChannelRow(channel_id=key, payer=_payer(proposed), state=proposed, version=0,
                                         updated_at=utcnow()))
                        s.flush()
                    else:
                        res = s.execute(update(ChannelRow).where(ChannelRow.channel_id == key,
                                                                 ChannelRow.version == found.version)
                                        .values(state=proposed, version=found.version + 1, updated_at=utcnow()))
                        if not res.rowcount:  # type: ignore[attr-defined]
                            raise _Lost()
                    new = charge(proposed) if charge is not None else None
                    if new is not None:
                        s.add(ChannelChargeRow(ticket=new.ticket, channel_id=new.channel_id.lower(), job_id=new.job_id,
                                               model_id=new.model_id, pay_to=new.pay_to.lower(), amount=new.amount,
                                               cumulative=new.cumulative, receipt=new.receipt))
                        # owed to the payee once the chain pays the claim: pending until the sweep captures it
                        self.book.hold(charge_transfer(new, _payer(proposed)), session=s)
                return proposed, True
            except _Lost:
                continue
            except IntegrityError:
                if found is None:
                    continue  # another process created the channel first: apply the change to its row
                raise
        raise DatabaseError(f"channel {key} kept changing under {CAS_ATTEMPTS} attempts to update it")

    def refuse(self, channel_id: str, reason: str) -> None:
        """The chain refuses this channel's voucher: it is claimed and served no more."""
        with self.db.session() as s:
            s.execute(update(ChannelRow).where(ChannelRow.channel_id == channel_id.lower())
                      .values(refused=reason[:300]))

    def refused(self, channel_id: str) -> str | None:
        return self.read(channel_id)[1]

    def refused_all(self) -> dict[str, str]:
        """Every channel the chain refused: id -> why."""
        with self.db.session() as s:
            return {r.channel_id: str(r.refused) for r in s.scalars(select(ChannelRow)
                                                                    .where(ChannelRow.refused.is_not(None)))}

    def charge(self, ticket: str | None) -> ChannelChargeRow | None:
        if ticket is None:
            return None
        with self.db.session() as s:
            return s.scalars(select(ChannelChargeRow).where(ChannelChargeRow.ticket == ticket)).first()

    def charges(self, *, sweep_id: int | None = None, unswept: bool = False, model_id: str | None = None,
                job_id: str | None = None, limit: int = 10_000) -> list[ChannelChargeRow]:
        with self.db.session() as s:
            query = select(ChannelChargeRow)
            if sweep_id is not None:
                query = query.where(ChannelChargeRow.sweep_id == sweep_id)
            if unswept:
                query = query.where(ChannelChargeRow.sweep_id.is_(None))
            if model_id is not None:
                query = query.where(ChannelChargeRow.model_id == model_id)
            if job_id is not None:
                query = query.where(ChannelChargeRow.job_id == job_id)
            return list(s.scalars(query.order_by(ChannelChargeRow.id).limit(limit)))

    def claimed(self, charge: ChannelChargeRow) -> None:
        """The chain paid this charge's claim: what the node owes its payee is posted (once)."""
        ref = f"charge:{charge.ticket}"
        if self.book.transfer(ref) is None:  # charged before the book: posted at once
            self.book.post(Transfer.move(ref, "charge", "batch-settlement", Accounts.wallet(charge.channel_id),
                                         Accounts.payee(charge.pay_to), charge.amount, model_id=charge.model_id))
            return
        try:
            self.book.capture(ref)
        except LedgerError:  # voided (written off), and the chain paid it after all: owed to the payee again
            held = self.book.transfer(ref)
            memo = dict(held.memo or {}) if held is not None else {}
            self.book.post(Transfer.move(f"{ref}:recovered", "charge", "batch-settlement",
                                         Accounts.wallet(charge.channel_id), Accounts.payee(charge.pay_to),
                                         charge.amount, model_id=charge.model_id,
                                         memo={**memo, "recovered": "claimed on chain after it was written off"}))

    def open_sweep(self, claim_txs: list[str], charge_ids: list[int]) -> ChannelSweepRow:
        """A sweep of the charges ``charge_ids`` (claimed on chain by ``claim_txs``), before its settle."""
        with self.db.session() as s:
            sweep = ChannelSweepRow(status="claimed", claim_txs=claim_txs, amount=0, created_at=utcnow())
            s.add(sweep)
            s.flush()
            total = 0
            for row in s.scalars(select(ChannelChargeRow).where(ChannelChargeRow.id.in_(charge_ids),
                                                                 ChannelChargeRow.sweep_id.is_(None))):
                row.sweep_id = sweep.id
                total += row.amount
            sweep.amount = total
            return sweep

    def sweep(self, sweep_id: int) -> ChannelSweepRow | None:
        with self.db.session() as s:
            return s.get(ChannelSweepRow, sweep_id)

    def sweeps(self, *, status: str | None = None, limit: int = 100) -> list[ChannelSweepRow]:
        with self.db.session() as s:
            query = select(ChannelSweepRow)
            if status is not None:
                query = query.where(ChannelSweepRow.status == status)
            return list(s.scalars(query.order_by(ChannelSweepRow.id.desc()).limit(limit)))

    def set_sweep(self, sweep_id: int, **values: Any) -> None:
        with self.db.session() as s:
            if values.get("status") in ("distributed", "failed"):
                values.setdefault("finished_at", utcnow())
            s.execute(update(ChannelSweepRow).where(ChannelSweepRow.id == sweep_id).values(**values))


class _Lost(Exception):
    """Another process updated the channel between our read and our write."""


def _payer(state: State) -> str:
    return str((state.get("channelConfig") or {}).get("payer", "")).lower()[:42]
