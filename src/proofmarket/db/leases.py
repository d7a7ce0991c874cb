"""Named leases in the database: one holder at a time, seen by every process and node on it (the settler's and a
watcher's leadership, a payer's funds lock, a model's free calls)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError

from proofmarket.core.errors import PaymentPayerBusy, ProofMarketError
from proofmarket.db.engine import Database
from proofmarket.db.tables import LeaseRow, utcnow


class LeaseRepo:
    """Named leases: one holder at a time, until it stops renewing (``ttl_s``) or releases."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def acquire(self, name: str, holder: str, ttl_s: float, *, fresh: bool = False) -> bool:
        """Take or renew ``name`` for ``holder``; False while another holder's lease runs. ``fresh``: a holder that
        never held it (a short lock), whose usual case is no row at all (a released lease is deleted): the insert is
        tried first, one transaction instead of two."""
        now = utcnow()
        until = now + timedelta(seconds=ttl_s)
        if fresh and self._insert(name, holder, until):
            return True
        with self.db.session() as s:
            res = s.execute(update(LeaseRow).where(LeaseRow.name == name, or_(
                LeaseRow.holder == holder, LeaseRow.expires_at < now)).values(holder=holder, expires_at=until))
            if res.rowcount:  # type: ignore[attr-defined]
                return True
        return not fresh and self._insert(name, holder, until)

    def _insert(self, name: str, holder: str, until: datetime) -> bool:
        try:
            with self.db.session() as s:
                s.add(LeaseRow(name=name, holder=holder, expires_at=until))
            return True
        except IntegrityError:  # held by someone else (or, for a fresh holder, an expired row the update takes)
            return False

    def acquire_within(self, name: str, holder: str, ttl_s: float, wait_s: float, *, fresh: bool = False) -> bool:
        """``acquire``, trying again (2 ms, doubling to 50 ms) while another holder's lease runs, for up to ``wait_s``;
        False when it still runs then."""
        deadline = time.monotonic() + wait_s
        pause = 0.002
        while not self.acquire(name, holder, ttl_s, fresh=fresh):
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(0.05, pause * 2)
        return True

    def holder(self, name: str) -> str | None:
        with self.db.session() as s:
            row = s.get(LeaseRow, name)
            return None if row is None or row.expires_at < utcnow() else row.holder

    def release(self, name: str, holder: str) -> None:
        with self.db.session() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    @contextmanager
    def hold(self, name: str, busy: ProofMarketError, *, wait_s: float = 10.0, ttl_s: float = 30.0) -> Iterator[None]:
        """Hold ``name`` for the block: a lock every process on this database sees. Waits up to ``wait_s`` for
        another holder, then raises ``busy``. A holder that dies loses it after ``ttl_s``."""
        holder = uuid.uuid4().hex
        if not self.acquire_within(name, holder, ttl_s, wait_s, fresh=True):
            raise busy
        try:
            yield
        finally:
            self.release(name, holder)

    def funds(self, payer: str, wait_s: float = 10.0) -> AbstractContextManager[None]:
        """A payer's funds lock: held while one of its calls checks and takes its balance (the job that holds it
        stored), while a key's free calls, pass calls and cap are taken, and while its credits are refunded; every
        node on this database takes turns."""
        name = f"funds:{payer.lower()}"
        return self.hold(name, PaymentPayerBusy(f"another call of this payer held its balance for over {wait_s:g} "
                                                "s: try again", lock=name), wait_s=wait_s)
