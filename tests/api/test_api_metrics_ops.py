"""What operators watch: the workers alive, the chain RPC's requests by outcome and time; an owner's revenue only
on the authenticated view of /metrics."""

from __future__ import annotations

import contextlib
import re
import time

from api_helpers import AppFactory
from fastapi.testclient import TestClient

from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import ChainError

TOKEN = "metrics-admin-token"


def test_workers_and_rpc_outcomes_are_exported_and_revenue_only_to_the_admin(make_app: AppFactory) -> None:
    dead = ChainClient("http://127.0.0.1:9")  # nothing listens: an unreachable RPC
    with contextlib.suppress(ChainError):
        _ = dead.chain_id
    app = make_app(admin_token=TOKEN)
    app.state.services.queue.runner.metrics.revenue.labels("bafy-model", "x402").inc(2_500)  # type: ignore[attr-defined]
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while 'proofmarket_workers 0.0' in (public := client.get("/metrics").text) and time.monotonic() < deadline:
            time.sleep(0.1)
        admin = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    alive = re.search(r"^proofmarket_workers ([0-9.]+)$", public, re.M)
    assert alive is not None and float(alive.group(1)) >= 1
    assert 'proofmarket_rpc_requests_total{method="eth_chainId",outcome="unreachable"}' in public
    assert "proofmarket_rpc_seconds_count" in public
    assert "proofmarket_model_revenue_atomic" not in public
    assert 'proofmarket_model_revenue_atomic_total{model="bafy-model",rail="x402"} 2500.0' in admin
