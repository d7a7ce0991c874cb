"""A rail's payments in flight (x402 ``upto``, ``proven``): each authorization reserved by one call only (a second
call with it is a replay), and a settlement whose transaction went missing sent again at most every
``resend_after_s`` (the authorization's nonce lets it move money once, whichever send lands)."""

from __future__ import annotations

import threading
import time


class Attempts:
    def __init__(self, resend_after_s: float) -> None:
        self.resend_after_s = resend_after_s
        self._lock = threading.Lock()
        self._reserved: set[str] = set()
        self._sent: dict[str, float] = {}  # key -> monotonic time of the last settlement sent

    def reserve(self, key: str) -> bool:
        """Take ``key`` for one call: False when a call holds it already."""
        with self._lock:
            if key in self._reserved:
                return False
            self._reserved.add(key)
            return True

    def sent(self, key: str) -> None:
        with self._lock:
            self._sent[key] = time.monotonic()

    def due(self, key: str) -> bool:
        """Whether to send ``key``'s settlement again now (then counted as sent); the first ask starts the clock."""
        now = time.monotonic()
        with self._lock:
            last = self._sent.setdefault(key, now)
            if now - last < self.resend_after_s:
                return False
            self._sent[key] = now
            return True

    def drop(self, key: str) -> None:
        """The payment settled, failed or was given up: its reservation and its clock go."""
        with self._lock:
            self._reserved.discard(key)
            self._sent.pop(key, None)
