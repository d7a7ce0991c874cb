"""The settler: one background service (under one lease, so one node of a database at a time) that moves what the
book says to the chain. Each pass follows pending purchases (credited once mined, voided once they cannot be) and,
every ``payout_every_s``, pays every payee what it is owed (``payouts.Payouts``: the one payout path); every
``check_every_s`` it reconciles the book with the chain (``reconcile.py``) and sets ``proofmarket_ledger_differences``.
``pay_now`` is what ``proofmarket payouts run`` and ``POST /v1/payouts/run`` (operator) call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from proofmarket.core.background import Lease, Service
from proofmarket.core.errors import UsageError
from proofmarket.db.book import Book
from proofmarket.payments.chain_tail import ChainTail
from proofmarket.payments.payouts import Payouts
from proofmarket.payments.purchases import Purchases
from proofmarket.payments.reconcile import Reconciliation, reconcile

LEASE = "settler"  # also: what an ended pass did not spend goes to the platform


PAY_WAIT_S = 120.0  # the operator's payout run waits this long for another node's settler pass to end


class Settler(Service):
    name = "settler"

    def __init__(self, purchases: Purchases | None, payouts: Payouts | None, *, interval_s: float = 5.0,
                 payout_every_s: float = 3600.0, lease: Lease | None = None,
                 check: Callable[[], Reconciliation] | None = None, check_every_s: float = 3600.0,
                 differences: Gauge | None = None, shortfall: Gauge | None = None) -> None:
        super().__init__(interval_s, lease=lease, lease_name=LEASE)
        self.purchases, self.payouts, self.payout_every_s = purchases, payouts, payout_every_s
        self.check, self.check_every_s, self.differences = check, check_every_s, differences
        self.shortfall = shortfall
        self._last_payout = self._last_check = time.monotonic()
        # the operator's "pay now", seen only by the pass run in its own thread (run_now ticks in the caller's thread):
        # a flag shared with the background loop let a scheduled pass take it and the operator's pass pay nothing
        self._asked = threading.local()
        self.last_check: Reconciliation | None = None

    def tick(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        if self.purchases is not None:
            report["purchases"] = self.purchases.follow()
            report["passes_ended"] = self.purchases.repo.close_ended_passes()
        due = getattr(self._asked, "pay", False) or time.monotonic() - self._last_payout >= self.payout_every_s
        if self.payouts is not None and due:
            self._asked.pay, self._last_payout = False, time.monotonic()
            report["payouts"] = self.payouts.run().to_json()
        if self.check is not None and (self.last_check is None
                                       or time.monotonic() - self._last_check >= self.check_every_s):
            self._last_check = time.monotonic()
            self.last_check = self.check()
            if self.differences is not None:
                self.differences.set(len(self.last_check.differences))
            if self.shortfall is not None:
                self.shortfall.set(self.last_check.shortfall)
            report["ledger"] = self.last_check.to_json()
        return report

    def next_payout_at(self) -> float:
        """When the next scheduled payout runs (epoch seconds)."""
        return time.time() + max(0.0, self.payout_every_s - (time.monotonic() - self._last_payout))

    def pay_now(self, wait_s: float = PAY_WAIT_S) -> dict[str, Any] | None:
        """One pass with the payouts, now: after another node's settler pass in progress, if one is (it holds the
        lease only for its pass); None when that pass still runs after ``wait_s``."""
        self._asked.pay = True
        try:
            done = self.run_now(wait_s=wait_s)
        finally:
            self._asked.pay = False
        return done if isinstance(done, dict) else None


@dataclass
class Money:
    """The node's book and what moves it: purchases, payouts and the settler that runs them."""

    book: Book
    purchases: Purchases | None = None
    payouts: Payouts | None = None
    settler: Settler | None = None
    receivable_after_s: float | None = None  # a channel charge not collected after this is a difference
    refused: Callable[[], Mapping[str, str]] | None = None  # channels the chain refused (id -> why)
    tail: ChainTail | None = None  # what the node's account did on chain that the book does not hold

    def check(self, from_block: int = 0) -> Reconciliation:
        """The book against its rules and, on a paid node, against the chain in both directions: book -> chain
        (``payments/reconcile.py``), chain -> book (``payments/chain_tail.py``: from ``from_block`` when given, else
        from the tail's cursor)."""
        options: dict[str, Any] = {"receivable_after_s": self.receivable_after_s, "refused": self.refused}
        if self.payouts is None:
            return reconcile(self.book, **options)
        p = self.payouts
        report = reconcile(self.book, p.client, p.usdc, p.sender.address, from_block=from_block, **options)
        report.blocked = p.blocked()
        if self.tail is not None:
            tail = self.tail.scan(from_block or None)
            report.differences += tail.differences()
            report.tail = tail.to_json()
        return report

    def replay(self) -> dict[str, Any]:
        """Book what the node's account sent on chain that the book does not hold (``ChainTail.replay``)."""
        if self.tail is None:
            raise UsageError("this node takes no payments on chain: its book has no chain to replay")
        return self.tail.replay()

    def write_off(self, ref: str, reason: str) -> dict[str, Any]:
        """Void a channel charge the node can no longer collect (``unknown.write_off``)."""
        from proofmarket.payments.unknown import write_off

        return write_off(self.book, ref, reason, refused=self.refused() if self.refused else {},
                         after_s=self.receivable_after_s)
