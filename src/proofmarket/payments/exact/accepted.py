"""The node's memory of payments it accepted: the guard against one payment starting two jobs.

A payment enters the ledger when ``PaymentGate.verify`` accepts it (``reserve``), gains its
settlement when ``PaymentGate.settle`` moves the money (``mark_settled``), and leaves it only if the
node gives it up before settling (``release``: the job failed, nothing was charged). A key that is
in the ledger, pending or settled, cannot be reserved again.

``InMemoryNonceLedger`` is for tests and single-process devnets; the API backs the same interface
with its database (one row per key, ``reserve`` an INSERT that fails on the primary key).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from proofmarket.payments.types import PaidOnChain, VerifiedPayment


@dataclass(frozen=True)
class LedgerEntry:
    payment: VerifiedPayment
    settlement: PaidOnChain | None = None

    @property
    def settled(self) -> bool:
        return self.settlement is not None


class NonceLedger(Protocol):
    def reserve(self, payment: VerifiedPayment) -> bool:
        """Atomically record ``payment`` as accepted-not-settled; False when its key is already known."""
        ...

    def get(self, key: str) -> LedgerEntry | None: ...

    def mark_settled(self, key: str, settlement: PaidOnChain) -> None:
        """Record the settlement of a reserved payment (idempotent for the same settlement)."""
        ...

    def release(self, key: str) -> None:
        """Forget a reserved, unsettled payment; a settled one is never forgotten."""
        ...

    def pending(self) -> list[VerifiedPayment]:
        """Reserved payments not settled yet (to resume or release after a restart)."""
        ...


class InMemoryNonceLedger:
    """A dict behind a lock: correct within one process, forgotten on restart."""

    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        self._lock = threading.Lock()

    def reserve(self, payment: VerifiedPayment) -> bool:
        with self._lock:
            if payment.key in self._entries:
                return False
            self._entries[payment.key] = LedgerEntry(payment)
            return True

    def get(self, key: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get(key)

    def mark_settled(self, key: str, settlement: PaidOnChain) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise KeyError(f"payment {key} was never reserved")
            if entry.settlement is not None and entry.settlement != settlement:
                raise ValueError(f"payment {key} is already settled in {entry.settlement.tx_hash}")
            self._entries[key] = LedgerEntry(entry.payment, settlement)

    def release(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not entry.settled:
                del self._entries[key]

    def pending(self) -> list[VerifiedPayment]:
        with self._lock:
            return [e.payment for e in self._entries.values() if not e.settled]
