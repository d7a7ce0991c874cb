"""The local engine's queue of calls, from which a prover thread takes a call and the calls that may share its proof.

A prover that takes a call whose system batches (``BatchKey``: calls to one model that may share a proof) also
takes the queued calls with the same key, up to the largest batch. Nothing waits when a call is alone: at low load
each call is proven at once, as without batching; under load the calls that queued while the prover was busy go
together. When it found company and the batch is not full, it waits up to ``window_s`` for more (zero: never
batch), and the window grows while calls keep arriving: each call that joins moves the deadline to ``window_s``
after it, up to ``MAX_WINDOWS`` windows in all (at high concurrency the answers of one batch come back as the next
calls, spread over more than one window: a fixed window split them into small batches). The queue keeps arrival
order otherwise; a call not taken stays where it was.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchKey:
    key: str  # calls with equal keys may share a proof
    limit: int  # the most calls one proof holds


KeyOf = Callable[[str], BatchKey | None]
MAX_WINDOWS = 8  # the longest a batch waits for company: this many windows, however steadily calls arrive


class BatchingQueue:
    """A FIFO of job ids (``put``/``get``/``qsize`` as ``queue.Queue``) that can also hand out a batch."""

    def __init__(self) -> None:
        self._items: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()

    def put(self, item: str) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()  # a getter, or a prover waiting for company

    def get(self) -> str:
        with self._cond:
            while not self._items:
                self._cond.wait()
            return self._items.popleft()

    def discard(self, item: str) -> None:
        """Every queued ``item`` removed."""
        with self._cond:
            kept = [i for i in self._items if i != item]
            self._items.clear()
            self._items.extend(kept)

    def qsize(self) -> int:
        with self._cond:
            return len(self._items)

    def batch(self, first: str, key_of: KeyOf, window_s: float, is_stop: Callable[[str], bool]) -> list[str]:
        """``first`` (just taken) and the queued calls that may share its proof (in arrival order)."""
        if window_s <= 0 or is_stop(first):
            return [first]
        with self._cond:
            if not self._items:  # nothing waits: the call is alone (and its key, a database read, is not needed)
                return [first]
        key = key_of(first)
        if key is None or key.limit < 2:
            return [first]
        taken = [first]
        deadline = latest = 0.0
        while len(taken) < key.limit:
            joined = self._take(key, key_of, key.limit - len(taken), is_stop)
            taken += joined
            if len(taken) == 1 or len(taken) >= key.limit:
                break  # alone (nothing waits) or full
            now = time.monotonic()
            if not deadline:
                deadline, latest = now + window_s, now + MAX_WINDOWS * window_s
            elif joined:  # calls are still arriving: wait a window after the last one, within the cap
                deadline = min(now + window_s, latest)
            left = deadline - now
            if left <= 0:
                break
            with self._cond:
                self._cond.wait(left)
        return taken

    def _take(self, key: BatchKey, key_of: KeyOf, most: int, is_stop: Callable[[str], bool]) -> list[str]:
        with self._cond:
            queued = list(self._items)
        matching = [item for item in queued if not is_stop(item) and key_of(item) == key][:most]
        if not matching:
            return []
        with self._cond:  # another prover may have taken some meanwhile: only what is still here
            here = set(self._items)
            mine = [item for item in matching if item in here]
            for item in mine:
                self._items.remove(item)
        return mine
