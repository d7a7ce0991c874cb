"""The validator's metrics (Prometheus) and its ``/metrics`` and ``/health`` endpoints."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

if TYPE_CHECKING:
    from proofmarket.validator.process import Validator


class ValidatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.checks = Counter("proofmarket_validator_checks", "results looked at, by verdict", ["verdict"],
                              registry=registry)
        self.challenges = Counter("proofmarket_validator_challenges", "challenges opened", registry=registry)
        self.votes = Counter("proofmarket_validator_votes", "votes cast", ["node_cheated"], registry=registry)
        self.errors = Counter("proofmarket_validator_errors", "failed polls or transactions", registry=registry)
        self.stake = Gauge("proofmarket_validator_stake_atomic", "the validator's stake on the court",
                           registry=registry)
        self.next_block = Gauge("proofmarket_validator_next_block", "first block not yet scanned", registry=registry)
        self.recheck = Gauge("proofmarket_validator_last_recheck_seconds", "the last re-execution's duration",
                             registry=registry)
        self.judge_failures = Counter("proofmarket_validator_judge_failures", "judgings that raised (retried; a "
                                      "vote is never cast on one)", registry=registry)
        self.failing = Gauge("proofmarket_validator_failing_judgings", "judgings failed in a row, with no verdict "
                             "between (at 3 the validator is not ready)", registry=registry)
        self.voting = Gauge("proofmarket_validator_voting_from_block", "per held model's listing: the block this "
                            "validator declared it in (it votes on requests committed after it)",
                            ["model", "listing"], registry=registry)



def serve_metrics(validator: Validator, host: str, port: int) -> ThreadingHTTPServer:
    """``/metrics`` (Prometheus text) and ``/health`` (JSON; 503 when the last poll is stale) in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/metrics":
                body, status, kind = generate_latest(validator.metrics.registry), 200, "text/plain; version=0.0.4"
            elif self.path == "/health":
                polling = validator.healthy()
                ready, reason = validator.ready()
                ok = polling and ready
                body = json.dumps({"status": "ok" if ok else ("stale" if not polling else "not_ready"),
                                   "ready": ready, "reason": reason if polling else f"the last poll is stale; {reason}",
                                   "address": validator.address, "court": validator.court.address,
                                   "voting": sorted(validator.voting.values(), key=lambda v: v["listing"]),
                                   "next_block": validator.state.next_block,
                                   "pending": len(validator.state.pending),
                                   "last_poll_age_s": round(time.time() - validator.last_poll, 1)}).encode()
                status, kind = (200 if ok else 503), "application/json"
            else:
                body, status, kind = b'{"error": "not found"}', 404, "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="validator-metrics", daemon=True).start()
    return server
