"""What this process asked its chain RPCs: requests by JSON-RPC method and outcome, and their time, for the node's
``/metrics`` (``RpcCollector``: proofmarket_rpc_requests_total, proofmarket_rpc_seconds) and the alert on an RPC that
fails. Every ``ChainClient`` records through ``RpcTimer`` (a web3 middleware)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from web3.middleware import Web3Middleware

_lock = threading.Lock()
_counts: dict[tuple[str, str], int] = defaultdict(int)
_seconds: dict[str, tuple[int, float]] = defaultdict(lambda: (0, 0.0))


def record(method: str, outcome: str, seconds: float) -> None:
    """``outcome``: ok | rpc_error (the RPC answered with an error, e.g. a revert) | unreachable (no answer)."""
    with _lock:
        _counts[(method, outcome)] += 1
        count, total = _seconds[method]
        _seconds[method] = (count + 1, total + seconds)


def snapshot() -> tuple[dict[tuple[str, str], int], dict[str, tuple[int, float]]]:
    with _lock:
        return dict(_counts), dict(_seconds)


class RpcTimer(Web3Middleware):
    """Times every request a web3 provider makes and records its outcome."""

    def wrap_make_request(self, make_request: Callable[..., Any]) -> Callable[..., Any]:
        def timed(method: Any, params: Any) -> Any:
            start = time.perf_counter()
            try:
                response = make_request(method, params)
            except Exception:
                record(str(method), "unreachable", time.perf_counter() - start)
                raise
            failed = isinstance(response, dict) and response.get("error") is not None
            record(str(method), "rpc_error" if failed else "ok", time.perf_counter() - start)
            return response

        return timed


class RpcCollector(Collector):
    def collect(self) -> Iterator[Any]:
        counts, seconds = snapshot()
        requests = CounterMetricFamily("proofmarket_rpc_requests", "Chain RPC requests by JSON-RPC method and outcome "
                                       "(ok, rpc_error: answered with an error, unreachable: no answer)",
                                       labels=["method", "outcome"])
        for (method, outcome), n in sorted(counts.items()):
            requests.add_metric([method, outcome], n)
        yield requests
        timing = SummaryMetricFamily("proofmarket_rpc_seconds", "Time of chain RPC requests, by method",
                                     labels=["method"])
        for method, (n, total) in sorted(seconds.items()):
            timing.add_metric([method], n, total)
        yield timing
