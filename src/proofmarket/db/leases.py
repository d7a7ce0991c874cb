"""Named leases in the database: one holder at a time, seen by every process and node on it (the settler's and a
watcher's leadership, a payer's funds lock, a model's free calls).

A short lock (``hold``) is taken in two steps: the threads of this process take turns on the name first (a
``threading.Lock`` per name, woken in turn), and only the thread whose turn it is asks the database, where other
processes and nodes take their turns. Without the first step every waiting thread polled the database: one payer's
32 calls at once were 32 threads writing lease rows on SQLite's one writer, the holder's own writes queued behind
them, and calls failed ``payment_payer_busy`` after waiting 10 s for a lock each holder kept for milliseconds.
"""

from __future__ import annotations

import threading
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


class _Turns:
    """This process's threads take turns on a name (a lock per name, kept while a thread holds or waits for it)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._names: dict[str, tuple[threading.Lock, list[int]]] = {}  # name -> (its lock, [threads on it])

    @contextmanager
    def turn(self, name: str, wait_s: float) -> Iterator[bool]:
        """Wait up to ``wait_s`` for this thread's turn on ``name``: True once it has it, False if the wait ran out."""
        with self._guard:
            lock, users = self._names.setdefault(name, (threading.Lock(), [0]))
            users[0] += 1
        mine = lock.acquire(timeout=max(0.0, wait_s))
        try:
            yield mine
        finally:
            if mine:
                lock.release()
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._names[name]


_TURNS = _Turns()  # one per process: every LeaseRepo of it (the call service's, each rail's) shares the turns


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
        another holder (this process's threads in turn, then the database's), then raises ``busy``. A holder that
        dies loses it after ``ttl_s``."""
        deadline = time.monotonic() + wait_s
        # this process's threads on this database first, one at a time (the module's doc)
        with _TURNS.turn(f"{self.db.url}|{name}", wait_s) as mine:
            if not mine:
                raise busy
            holder = uuid.uuid4().hex
            if not self.acquire_within(name, holder, ttl_s, max(0.0, deadline - time.monotonic()), fresh=True):
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
