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


def test_the_window_grows_while_calls_keep_arriving() -> None:
    """Calls 0.3 s apart for 1.5 s, a 1 s window: a fixed window would close after the third; each arrival moves it."""
    q = _queue("a1", "a2")
    first = q.get()

    def arrive() -> None:
        for i in range(5):
            time.sleep(0.3)
            q.put(f"c{i}")

    feeder = threading.Thread(target=arrive)
    feeder.start()
    taken = q.batch(first, lambda item: BatchKey("a", 10), window_s=1.0, is_stop=_stop)
    feeder.join()
    assert taken == ["a1", "a2", "c0", "c1", "c2", "c3", "c4"]


def test_the_grown_window_is_capped() -> None:
    """Calls that never stop arriving: the batch goes after MAX_WINDOWS windows, not when the stream ends."""
    from proofmarket.calls.batch_queue import MAX_WINDOWS

    q = _queue("a1", "a2")
    first = q.get()
    stop = threading.Event()

    def arrive() -> None:
        i = 0
        while not stop.is_set():
            q.put(f"c{i}")
            i += 1
            time.sleep(0.02)

    feeder = threading.Thread(target=arrive)
    feeder.start()
    started = time.monotonic()
    taken = q.batch(first, lambda item: BatchKey("a", 10_000), window_s=0.1, is_stop=_stop)
    elapsed = time.monotonic() - started
    stop.set()
    feeder.join()
    assert MAX_WINDOWS * 0.1 - 0.05 <= elapsed < MAX_WINDOWS * 0.1 + 2.0 and len(taken) > 3
