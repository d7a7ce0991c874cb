"""One base for the node's background loops: start, stop, a tick every interval, an optional lease, a backoff.

A ``Service`` runs ``tick()`` on its own daemon thread every ``interval_s`` (sooner after ``wake()``); a tick that
raises is logged and the next waits twice as long (up to ``max_backoff_s``); with a lease (``Lease``: any object
with ``acquire(name, holder, ttl_s)`` and ``release(name, holder)``), only the holder ticks, so that several nodes
on one database take turns. Every background loop of the node is a ``Background`` (a ``Service``, or a loop of
its own that keeps a ``Pulse``): ``node/supervisor.py`` starts them in order, stops them in the reverse order, and
reports their health (``/health``) and metrics (``/metrics``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from proofmarket.core.error_base import ProofMarketError

log = logging.getLogger(__name__)


class Lease(Protocol):
    def acquire(self, name: str, holder: str, ttl_s: float) -> bool: ...

    def acquire_within(self, name: str, holder: str, ttl_s: float, wait_s: float) -> bool: ...

    def release(self, name: str, holder: str) -> None: ...


@dataclass(frozen=True)
class ServiceHealth:
    """What a background loop tells of itself. ``error``: the last pass's failure while it keeps failing (an error
    code or a class name, never a message: an RPC URL's key must not reach a public ``/health``)."""

    name: str
    running: bool
    passes: int = 0
    failures: int = 0
    last_pass_at: float | None = None  # unix time of the last pass that ended, well or not
    error: str | None = None


class Background(Protocol):
    """A background loop the node starts, stops and watches (``node/supervisor.py``)."""

    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def health(self) -> ServiceHealth: ...


class Pulse:
    """A loop's passes and failures, counted where the loop runs them (``passed``/``failed``)."""

    def __init__(self) -> None:
        self.passes = self.failures = 0
        self.last_pass_at: float | None = None
        self.error: str | None = None

    def passed(self) -> None:
        self.passes, self.last_pass_at, self.error = self.passes + 1, time.time(), None

    def failed(self, exc: BaseException) -> None:
        self.failures, self.last_pass_at = self.failures + 1, time.time()
        self.error = exc.code if isinstance(exc, ProofMarketError) else type(exc).__name__

    def health(self, name: str, thread: threading.Thread | None) -> ServiceHealth:
        """The health of the loop ``name`` that runs on ``thread`` (None: not started)."""
        running = thread is not None and thread.is_alive()
        return ServiceHealth(name, running, self.passes, self.failures, self.last_pass_at, self.error)


def lease_holder(owner: object) -> str:
    """A lease holder's name: this host, this process and this object (two of them in one process are two)."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(owner):x}"


class Service:
    name = "service"

    def __init__(self, interval_s: float, *, lease: Lease | None = None, lease_name: str | None = None,
                 max_backoff_s: float = 300.0) -> None:
        self.interval_s, self.lease, self.max_backoff_s = interval_s, lease, max_backoff_s
        self.lease_name = lease_name or f"service:{self.name}"
        self.holder = lease_holder(self)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one tick at a time (a loop's tick and an operator's ``run_now``)
        self.pulse = Pulse()

    def tick(self) -> object:
        raise NotImplementedError

    def run_now(self, wait_s: float = 0.0) -> object | None:
        """One tick now, under the lease; ``wait_s``: how long to wait for another holder's tick to end first (an
        operator's request, answered after that node's pass); None when another holder still has it then."""
        with self._lock:
            ttl, name = max(60.0, 4 * self.interval_s), self.lease_name
            if self.lease is not None and not (self.lease.acquire_within(name, self.holder, ttl, wait_s) if wait_s > 0
                                               else self.lease.acquire(name, self.holder, ttl)):
                return None
            try:
                return self.tick()
            finally:
                if self.lease is not None:
                    self.lease.release(self.lease_name, self.holder)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"proofmarket-{self.name}", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def health(self) -> ServiceHealth:
        return self.pulse.health(self.name, self._thread)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        wait = self.interval_s
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_now()
                self.pulse.passed()
                wait = self.interval_s
            except Exception as exc:  # the chain or the database hiccuped: try again later
                log.exception("the %s pass failed; it is tried again", self.name)
                self.pulse.failed(exc)
                wait = min(self.max_backoff_s, max(wait, 1.0) * 2)
