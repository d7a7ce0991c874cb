"""A call's slices shared by the celery engine's workers (``calls/slice_share.py``), on a real redis-server, with
stand-in provers (the real ones: ``test_celery_sliced.py``): every slice proven once, by whoever took it; a killed
holder's slice taken back; a failed slice tried again, then the call failed; slices done before a restart kept."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from proofmarket.calls import slice_share
from proofmarket.calls.redis_server import RedisServer
from proofmarket.calls.slice_share import SliceShare
from proofmarket.core.errors import ProvingError
from proofmarket.systems.ezkl.sliced import ProverPool, SliceWork


@pytest.fixture
def client(live_redis: RedisServer) -> Any:
    import redis

    r = redis.Redis.from_url(live_redis.url)
    r.flushall()
    return r


class Prover:
    """A stand-in prover: records what it proved and answers a document naming it and the slice."""

    def __init__(self, name: str, delay_s: float = 0.0, fail: int = 0) -> None:
        self.name, self.delay_s, self.fail = name, delay_s, fail
        self.proved: list[int] = []
        self.started = threading.Event()

    def close(self) -> None: ...


def prove_one(prover: Prover, work: SliceWork) -> dict[str, Any]:
    prover.started.set()
    time.sleep(prover.delay_s)
    if prover.fail:
        prover.fail -= 1
        raise RuntimeError(f"{prover.name} broke on slice {work.index}")
    prover.proved.append(work.index)
    return {"slice": work.index, "by": prover.name, "input": work.inputs}


def work(count: int) -> list[SliceWork]:
    return [SliceWork(k, f"model-{k}", {"input_data": [[float(k)]]}, [7] if k == 0 else None) for k in range(count)]


def test_alone_the_worker_running_the_call_proves_every_slice_in_order(client: Any) -> None:
    sent: list[tuple[str, int]] = []
    prover = Prover("w1")
    share = SliceShare(client, lambda c, k: sent.append((c, k)), "w1", 30.0)
    docs = share.prove("call-1", work(3), ProverPool([prover]), prove_one)
    assert [d["slice"] for d in docs] == [0, 1, 2] and sorted(prover.proved) == [0, 1, 2]
    assert [d["input"] for d in docs] == [{"input_data": [[0.0]]}, {"input_data": [[1.0]]}, {"input_data": [[2.0]]}]
    assert sent == [("call-1", 2), ("call-1", 1), ("call-1", 0)]  # the others are asked from the last slice
    assert client.keys("proofmarket:slices:*") == []  # the tensors between slices do not outlive the call


def test_a_second_worker_proves_the_slices_it_takes_and_no_slice_is_proven_twice(client: Any) -> None:
    import queue

    mine, theirs = Prover("w1", delay_s=0.3), Prover("w2", delay_s=0.3)
    helper = SliceShare(client, lambda c, k: None, "w2", 30.0)
    messages: queue.SimpleQueue[tuple[str, int] | None] = queue.SimpleQueue()

    def solo_worker() -> None:  # w2, one task at a time as a celery solo worker, once w1 proves its first slice
        mine.started.wait(10)
        while (message := messages.get()) is not None:
            helper.help(*message, ProverPool([theirs]), prove_one)

    thread = threading.Thread(target=solo_worker)
    thread.start()
    try:
        share = SliceShare(client, lambda c, k: messages.put((c, k)), "w1", 30.0)
        docs = share.prove("call-2", work(4), ProverPool([mine]), prove_one)
    finally:
        messages.put(None)
        thread.join(10)
    assert [d["slice"] for d in docs] == [0, 1, 2, 3]
    assert 0 in mine.proved and 3 in theirs.proved  # both worked on the one call, from either end
    assert sorted(mine.proved + theirs.proved) == [0, 1, 2, 3]  # each slice proven once
    assert [d["by"] for d in docs] == ["w1" if k in mine.proved else "w2" for k in range(4)]


def test_a_slice_whose_holder_died_is_taken_back(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slice_share, "TAKEN_TTL_S", 1)
    # a worker took slice 1 and was killed: its hold is never renewed, its slice never done
    client.set("proofmarket:slices:call-3:1:taken", "w2", ex=1)
    mine = Prover("w1")
    started = time.monotonic()
    docs = SliceShare(client, lambda c, k: None, "w1", 30.0).prove("call-3", work(2), ProverPool([mine]), prove_one)
    assert [d["by"] for d in docs] == ["w1", "w1"] and sorted(mine.proved) == [0, 1]
    assert time.monotonic() - started >= 0.5  # it waited for the hold to lapse, then proved it


def test_a_failed_slice_is_tried_again_then_fails_the_call(client: Any) -> None:
    once = Prover("w1", fail=1)
    docs = SliceShare(client, lambda c, k: None, "w1", 30.0).prove("call-4", work(2), ProverPool([once]), prove_one)
    assert [d["slice"] for d in docs] == [0, 1] and sorted(once.proved) == [0, 1]  # the failure was tried again

    broken = Prover("w1", fail=10)
    with pytest.raises(RuntimeError, match="broke on slice 0"):
        SliceShare(client, lambda c, k: None, "w1", 30.0).prove("call-5", work(2), ProverPool([broken]), prove_one)
    assert broken.fail == 10 - slice_share.MAX_TRIES


def test_a_slice_failing_on_other_workers_fails_the_call_with_their_error(client: Any) -> None:
    client.set("proofmarket:slices:call-6:1:tries", slice_share.MAX_TRIES)
    client.set("proofmarket:slices:call-6:1:error", "RuntimeError: out of memory")
    with pytest.raises(ProvingError, match="slice 1 of this call failed 2 times .*out of memory"):
        SliceShare(client, lambda c, k: None, "w1", 30.0).prove("call-6", work(2), ProverPool([Prover("w1")]),
                                                                prove_one)


def test_slices_done_before_the_call_ran_again_are_kept(client: Any) -> None:
    import json

    client.set("proofmarket:slices:call-7:0:done", json.dumps({"slice": 0, "by": "w9", "input": None}))
    mine = Prover("w1")
    docs = SliceShare(client, lambda c, k: None, "w1", 30.0).prove("call-7", work(2), ProverPool([mine]), prove_one)
    assert [d["by"] for d in docs] == ["w9", "w1"] and mine.proved == [1]


def test_a_helper_asked_after_the_call_has_its_bundle_does_nothing(client: Any) -> None:
    theirs = Prover("w2")
    SliceShare(client, lambda c, k: None, "w2", 30.0).help("call-gone", 0, ProverPool([theirs]), prove_one)
    assert theirs.proved == [] and client.keys("proofmarket:slices:*") == []
