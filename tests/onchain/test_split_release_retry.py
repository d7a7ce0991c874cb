"""A split release that fails is tried again with a backoff and shown until it goes through (issue 82): before, a
failed ``releaseSplit`` was logged once and the money stayed in the splitter until the next payment to it."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from proofmarket.core.errors import ChainError
from proofmarket.onchain import listings as listings_module
from proofmarket.onchain.listings import Listings


def bare_listings(every_s: float) -> Listings:
    """The release loop alone (no market: ``release`` is replaced below)."""
    listings = Listings.__new__(Listings)
    listings._releases, listings._lock, listings._thread = queue.Queue(), threading.Lock(), None
    listings._validated, listings.release_failures, listings.release_every_s = {}, {}, every_s
    return listings


def test_a_failed_release_is_retried_with_a_backoff_and_shown_until_it_succeeds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    listings = bare_listings(0.05)
    tries: list[float] = []
    shown: list[dict[str, object]] = []

    def release(onchain_id: str) -> int:
        tries.append(time.monotonic())
        if len(tries) <= 2:
            raise ChainError("the prover account has no gas")
        shown.append(dict(listings.release_failures[onchain_id]))  # what /v1/earnings showed before it went through
        return 7

    monkeypatch.setattr(listings, "release", release)
    listings.release_later("0xabc")
    deadline = time.monotonic() + 10
    while len(tries) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert len(tries) == 3
        # the wait doubles at each failure: 0.05 s, then 0.1 s (lower bounds: a loaded machine only adds to a wait,
        # so two measured gaps are not compared with each other)
        assert tries[1] - tries[0] >= 0.05 * 0.95 and tries[2] - tries[1] >= 0.1 * 0.95
        assert shown[0]["attempts"] == 2 and "no gas" in str(shown[0]["error"])
        time.sleep(0.05)
        assert listings.release_failures == {}  # released: nothing shown any more
    finally:
        listings._releases.put(None)


def test_the_backoff_stops_at_an_hour() -> None:
    listings = bare_listings(listings_module.RELEASE_EVERY_S)
    waits = [listings._failed_release("0xabc", ChainError("down")) for _ in range(12)]
    assert waits[:3] == [30.0, 60.0, 120.0] and max(waits) == listings_module.RELEASE_RETRY_MAX_S == 3600.0
    assert listings.release_failures["0xabc"]["attempts"] == 12
