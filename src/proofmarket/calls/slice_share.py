"""One call's slices proven by every worker of the celery engine (a sliced model: ``systems/ezkl/sliced.py``).

    the worker running the call                       Redis                              any other worker
    witness chain (once); each slice's work  ──► proofmarket:slices:<call>
    sends proofmarket.prove_slice(call, k)   ──► queue proofmarket.slices          ──► takes k (SET NX, kept alive
    takes slices from the first on its own                                              while it proves), proves it,
    provers, proves them, writes them done   ◄── <call>:<k>:done (the slice's bundle) ◄┘ writes it done
    waits for every slice; takes one back whose holder stopped renewing it (a killed worker) and proves it itself

A slice is proven once: taking it is one ``SET NX`` on its key, and a done slice is never taken again. A slice that
failed is tried again (by whoever takes it next) up to ``MAX_TRIES`` times, then the call fails with the last error,
and nothing is charged (the call's settlement waits for its bundle, which the node verifies first). A worker killed
mid-slice loses only that slice's time; a worker killed while running the call is the queue janitor's (the call is
queued again, and the slices already done are taken from Redis, not proven again). What a slice's work holds (the
tensors between slices) stays in Redis, within the node's workers, and is deleted when the call has its bundle.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from proofmarket.core.errors import ProofTimeout, ProvingError
from proofmarket.systems.ezkl.sliced import ProverPool, SliceWork

log = logging.getLogger(__name__)

SLICE_TASK, SLICE_QUEUE = "proofmarket.prove_slice", "proofmarket.slices"
KEY = "proofmarket:slices:"  # + call id: the call's work; + call id + ":<k>:taken|done|tries|error"
TAKEN_TTL_S, RENEW_S = 10, 2.0  # a taken slice whose holder stops renewing it is free again after TAKEN_TTL_S
MAX_TRIES = 2
POLL_S = 0.1
ProveOne = Callable[[Any, SliceWork], dict[str, Any]]


class SliceShare:
    """``send(call_id, k)`` asks the other workers for slice k (a celery task); ``name`` is this worker's."""

    def __init__(self, client: Any, send: Callable[[str, int], None], name: str, proof_timeout_s: float) -> None:
        self.client, self.send, self.name, self.proof_timeout_s = client, send, name, proof_timeout_s

    # --- the worker running the call ----------------------------------------------------------------------------
    def prove(self, call_id: str, work: list[SliceWork], pool: ProverPool, prove_one: ProveOne) -> list[dict[str, Any]]:
        """Every slice's bundle, in order: proven here on ``pool`` or by another worker."""
        count = len(work)
        self.client.set(KEY + call_id, json.dumps([asdict(w) for w in work]),
                        ex=int(self.proof_timeout_s * (count + 1) + 300))
        for k in reversed(range(count)):  # the others start from the last slice, this worker from the first
            try:
                self.send(call_id, k)
            except Exception as exc:  # the broker is away: this worker proves every slice
                log.warning("call %s: could not ask the other workers for slice %d (%s)", call_id, k, exc)
        deadline = time.monotonic() + self.proof_timeout_s * (count + 1) + 60
        failed: list[BaseException] = []

        def take_and_prove() -> None:
            while not failed:
                k = next((k for k in range(count) if self._take(call_id, k)), None)
                if k is None:
                    if self._all_done(call_id, count):
                        return
                    self._check(call_id, count, deadline)
                    time.sleep(POLL_S)
                    continue
                with pool.lend() as prover:
                    self._prove(call_id, work[k], prover, prove_one)

        def guarded() -> None:
            try:
                take_and_prove()
            except BaseException as exc:  # the first error ends the call; the other threads stop taking slices
                failed.append(exc)

        with ThreadPoolExecutor(max_workers=len(pool), thread_name_prefix="proofmarket-slice") as threads:
            for _ in range(len(pool)):
                threads.submit(guarded)
        if failed:
            raise failed[0]
        docs = [json.loads(self.client.get(self._key(call_id, k, "done"))) for k in range(count)]
        self.client.delete(KEY + call_id, *(self._key(call_id, k, part) for k in range(count)
                                            for part in ("taken", "done", "tries", "error")))
        return docs

    def _all_done(self, call_id: str, count: int) -> bool:
        return int(self.client.exists(*(self._key(call_id, k, "done") for k in range(count)))) == count

    def _check(self, call_id: str, count: int, deadline: float) -> None:
        for k in range(count):
            tries = int(self.client.get(self._key(call_id, k, "tries")) or 0)
            if tries >= MAX_TRIES and not self.client.exists(self._key(call_id, k, "done")):
                why = (self.client.get(self._key(call_id, k, "error")) or b"").decode()
                raise ProvingError(f"slice {k} of this call failed {tries} times (the last: {why})",
                                   slice=k)
        if time.monotonic() > deadline:
            raise ProofTimeout(f"the call's {count} slices were not all proven in time", slices=count)

    # --- any other worker --------------------------------------------------------------------------------------
    def help(self, call_id: str, k: int, pool: ProverPool, prove_one: ProveOne) -> None:
        """Prove slice ``k`` of ``call_id`` here, unless the call has its bundle already or the slice is taken."""
        raw = self.client.get(KEY + call_id)
        if raw is None or not self._take(call_id, k):
            return
        work = [SliceWork(**w) for w in json.loads(raw)]
        try:
            with pool.lend() as prover:
                self._prove(call_id, work[k], prover, prove_one)
        except Exception:  # recorded on the slice: the worker running the call sees it
            log.warning("call %s: slice %d failed on this worker", call_id, k, exc_info=True)

    # --- both --------------------------------------------------------------------------------------------------
    def _take(self, call_id: str, k: int) -> bool:
        if self.client.exists(self._key(call_id, k, "done")):
            return False
        if int(self.client.get(self._key(call_id, k, "tries")) or 0) >= MAX_TRIES:
            return False
        return bool(self.client.set(self._key(call_id, k, "taken"), self.name, nx=True, ex=TAKEN_TTL_S))

    def _prove(self, call_id: str, work: SliceWork, prover: Any, prove_one: ProveOne) -> None:
        """Prove a slice this worker took; done, or its failure counted and the slice free again."""
        taken = self._key(call_id, work.index, "taken")
        try:
            with self._renewed(taken):
                if self.client.exists(self._key(call_id, work.index, "done")):  # done meanwhile by a lapsed holder
                    return
                started = time.perf_counter()
                doc = prove_one(prover, work)
            self.client.set(self._key(call_id, work.index, "done"), json.dumps(doc),
                            ex=int(self.proof_timeout_s * 4 + 300))
            log.info("call %s: slice %d proven by %s in %.3f s", call_id, work.index, self.name,
                     time.perf_counter() - started)
        except Exception as exc:
            tries = int(self.client.incr(self._key(call_id, work.index, "tries")))
            self.client.set(self._key(call_id, work.index, "error"), f"{type(exc).__name__}: {exc}"[:500])
            if tries >= MAX_TRIES:
                raise
            log.warning("call %s: slice %d failed on %s (%s); it is tried again", call_id, work.index, self.name, exc)
        finally:
            if self.client.get(taken) == self.name.encode():  # not another's, who took it after this hold lapsed
                self.client.delete(taken)

    @contextmanager
    def _renewed(self, key: str) -> Iterator[None]:
        """Keep this worker's hold on ``key`` alive while it proves (a killed worker's lapses in TAKEN_TTL_S)."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(RENEW_S):
                try:
                    if self.client.get(key) == self.name.encode():
                        self.client.expire(key, TAKEN_TTL_S)
                except Exception:
                    log.warning("could not renew %s (Redis?)", key, exc_info=True)

        thread = threading.Thread(target=renew, name="proofmarket-slice-hold", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)

    @staticmethod
    def _key(call_id: str, k: int, part: str) -> str:
        return f"{KEY}{call_id}:{k}:{part}"
