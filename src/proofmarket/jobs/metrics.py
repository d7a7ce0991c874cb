"""Prometheus metrics of the job queue, on a registry the caller owns (one per app, so tests can build many)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PROOF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram("proofmarket_job_duration_seconds", "Time a worker spent on a job's main step "
                                  "(prove: the proof; compile: the whole compile)", ["kind"],
                                  buckets=PROOF_BUCKETS, registry=registry)
        self.finished = Counter("proofmarket_jobs_finished_total", "Jobs that reached a final state",
                                ["kind", "status"], registry=registry)
        self.failures = Counter("proofmarket_job_failures_total", "Failed jobs by error code", ["kind", "code"],
                                registry=registry)
        self.queue_depth = Gauge("proofmarket_queue_depth", "Jobs waiting for a worker", registry=registry)
        self.running = Gauge("proofmarket_jobs_running", "Jobs a worker is running now", registry=registry)

    def track_depth(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(depth()))


class EscrowMetrics:
    """The escrow watcher's view: requests closed by outcome, failures by code, time from claim to fulfil."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.closed = Counter("proofmarket_escrow_requests_total", "Escrow requests this node closed, by outcome "
                              "(fulfilled: the market accepted our proof; rejected: it did not; failed: see failures)",
                              ["outcome"], registry=registry)
        self.failures = Counter("proofmarket_escrow_failures_total", "Escrow requests failed for good, by error code",
                                ["code"], registry=registry)
        self.fulfil = Histogram("proofmarket_escrow_fulfil_seconds", "From claiming a request to its fulfil "
                                "transaction's receipt (proof and submission)", buckets=PROOF_BUCKETS,
                                registry=registry)
        self.open = Gauge("proofmarket_escrow_open_requests", "Requests seen and not yet closed (waiting for input, "
                          "or being proved)", registry=registry)

    def track_open(self, count: Callable[[], float]) -> None:
        self.open.set_function(count)
