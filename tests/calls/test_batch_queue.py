"""The engine's call queue: which queued calls a prover takes together, and when it waits for company."""

from __future__ import annotations

import threading
import time

from proofmarket.calls.batch_queue import BatchingQueue, BatchKey

KEYS = {"a1": BatchKey("a", 3), "a2": BatchKey("a", 3), "a3": BatchKey("a", 3), "a4": BatchKey("a", 3),
        "b1": BatchKey("b", 3), "solo": None}


def _key(item: str) -> BatchKey | None:
    return KEYS.get(item)


def _queue(*items: str) -> BatchingQueue:
    q = BatchingQueue()
    for item in items:
        q.put(item)
    return q


def _stop(item: str) -> bool:
    return item == "STOP"


def test_a_call_alone_is_taken_alone_at_once() -> None:
    q = _queue("a1")
    started = time.monotonic()
    first = q.get()
    asked: list[str] = []
    assert q.batch(first, lambda item: asked.append(item) or _key(item), window_s=5.0, is_stop=_stop) == ["a1"]
    assert time.monotonic() - started < 1.0  # nothing queued with it: it does not wait for company
    assert asked == []  # nor is its batch key read (a database read on the node) when nothing waits


def test_calls_with_its_key_are_taken_up_to_the_limit_in_order_and_others_stay() -> None:
    q = _queue("a1", "b1", "a2", "solo", "a3", "a4")
    assert q.batch(q.get(), _key, window_s=0.01, is_stop=_stop) == ["a1", "a2", "a3"]
    assert [q.get() for _ in range(q.qsize())] == ["b1", "solo", "a4"]


def test_a_zero_window_never_batches() -> None:
    q = _queue("a1", "a2")
    assert q.batch(q.get(), _key, window_s=0, is_stop=_stop) == ["a1"]
    assert q.qsize() == 1


def test_a_call_without_a_key_or_a_stop_is_taken_alone() -> None:
    q = _queue("solo", "a1", "STOP", "a2")
    assert q.batch(q.get(), _key, window_s=1.0, is_stop=_stop) == ["solo"]
    assert q.batch(q.get(), _key, window_s=0.01, is_stop=_stop) == ["a1", "a2"]  # the stop is never taken along
    assert q.get() == "STOP"


def test_a_batch_that_found_company_waits_the_window_for_more() -> None:
    q = _queue("a1", "a2")
    first = q.get()
    late = threading.Timer(0.05, q.put, args=("a3",))
    late.start()
    assert q.batch(first, _key, window_s=2.0, is_stop=_stop) == ["a1", "a2", "a3"]  # full: no more waiting
    late.join()
