"""The OpenAPI schema fuzzed with schemathesis: no request makes the node answer 5xx.

Model ids are pinned to the served model and uploads carry the admin token, so that bodies reach the
handlers instead of stopping at 404 or 401. Each operation's Hypothesis strategy is driven here
directly: schemathesis' lazy pytest fixture loader relies on a pytest internal that pytest 9 removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_helpers import ADMIN_TOKEN, node_settings
from hypothesis import HealthCheck, given, settings

from proofmarket.api import create_app

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 50
# every fuzzed request must reach its handler, not stop at a 429 (the limits are tested in test_api_rate_limits.py)
NO_RATE_LIMITS = {f"rate_limit_{name}": "off" for name in ("unpaid", "probe", "payer", "key")}


@pytest.fixture(scope="module")
def fuzz_schema(node_home: Path, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    app = create_app(node_settings(node_home, tmp_path_factory.mktemp("fuzzdb") / "node.db", infer_wait_s=30.0,
                                   admin_token=ADMIN_TOKEN, **NO_RATE_LIMITS))
    services = app.state.services
    services.catalog.register(mlp_id, price_atomic=10_000)
    services.queue.start()
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    services.close()


def test_no_server_errors(fuzz_schema: Any, mlp_id: str) -> None:
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) == 61  # /v1/nodes, /v1/auth/whoami, /dashboard, /v1/earnings, generate, ERC-8004, /v1/court,
    # history, /v1/calls,
    # /v1/channels, /v1/keys, /v1/credits, /v1/passes, free quotas, /openai/v1, listings, stats, webhooks,
    # /v1/purchases, /v1/payouts/run, /v1/ledger/check, /v1/ledger/replay, /v1/ledger/unknown[/{ref}],
    # /v1/ledger/write-off/{ref}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_5xx(case: Any) -> None:
            if case.path_parameters and "model_id" in case.path_parameters:  # reach the served model, not a 404
                case.path_parameters["model_id"] = mlp_id
            response = case.call(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        no_5xx()
