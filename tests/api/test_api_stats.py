"""Per-model analytics: the numbers are the calls made (free calls run for real; paid and failed ones are
recorded as the lifecycle records them), in the stats route, the CLI and the Prometheus series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from api_helpers import AppFactory, mlp_input
from fastapi.testclient import TestClient
from served import Served
from typer.testing import CliRunner

from proofmarket.cli.main import app as cli
from proofmarket.db import CallKind, CallRow, CallStatus
from proofmarket.marketplace.analytics import percentile


def record(services: object, model_id: str, status: str, *, amount: int | None = None, code: str | None = None,
           tokens: int | None = None, run_s: float = 0.5, days_ago: int = 0, seconds: float = 2.0) -> None:
    """A call as the lifecycle leaves it (rows written by the runner in a real node)."""
    created = datetime.now(UTC) - timedelta(days=days_ago)
    result = {"run_s": run_s, **({"tokens": tokens} if tokens is not None else {})}
    settlement = {"payment": {"amount": str(amount)}, "receipt": {}} if amount is not None else None
    with services.db.session() as s:  # type: ignore[attr-defined]
        s.add(CallRow(id=f"j{abs(hash((status, amount, code, tokens, days_ago, run_s))) % 10**12:012d}",
                      kind=CallKind.PROVE, model_id=model_id, status=status, system="ezkl-halo2-kzg-bn254",
                      rail="x402" if amount is not None or status == CallStatus.FAILED else "free", input={},
                      request_hash="x", payment={"amount_atomic": "1"} if amount is not None else None,
                      settlement=settlement, result=result if status != CallStatus.FAILED else None,
                      error_code=code, error_message=code, created_at=created, started_at=created,
                      finished_at=created + timedelta(seconds=seconds)))


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


@pytest.mark.slow
def test_the_stats_are_the_calls_made(make_app: AppFactory, mlp_id: str) -> None:
    app = make_app(stats_min_calls=1)  # every bucket published (the k rule has its own test)
    services = app.state.services
    services.catalog.register(mlp_id, price_atomic=10_000)
    with TestClient(app) as client:
        for i in range(3):  # three free calls on three inputs, proved for real (no cache hit)
            doc = mlp_input()
            doc["input_data"][0][0] += 0.125 * i
            assert client.post(f"/v1/models/{mlp_id}/infer", json=doc).status_code == 200
        record(services, mlp_id, CallStatus.SETTLED, amount=10_000, seconds=400.0)  # slower than any real call
        record(services, mlp_id, CallStatus.SETTLED, amount=7_500, tokens=12, days_ago=2, run_s=0.7)
        record(services, mlp_id, CallStatus.FAILED, code="witness_failed")
        record(services, mlp_id, CallStatus.FAILED, code="payment_settlement_failed", days_ago=1)
        record(services, mlp_id, CallStatus.SETTLED, amount=1, days_ago=40)  # outside a 30-day window

        doc = client.get(f"/v1/models/{mlp_id}/stats").json()
        assert doc["calls"] == {"total": 7, "settled": 2, "free": 3, "failed": 2, "open": 0,
                                "by_rail": {"free": 3, "x402": 4}}
        assert doc["errors"] == {"witness_failed": 1, "payment_settlement_failed": 1}
        assert doc["revenue_atomic"] == "17500" and doc["tokens"] == 12
        assert doc["run_s"]["count"] == 5 and doc["latency_s"]["count"] == 5
        assert doc["latency_s"]["p95"] == 400.0 and doc["run_s"]["p95"] >= 0.7  # the nearest rank of 5: the slowest
        assert len(doc["by_day"]) == 30
        today, two_days_ago = doc["by_day"][-1], doc["by_day"][-3]
        assert (today["calls"], today["failed"], today["revenue_atomic"]) == (5, 1, "10000")
        assert (two_days_ago["calls"], two_days_ago["tokens"], two_days_ago["revenue_atomic"]) == (1, 12, "7500")
        assert client.get(f"/v1/models/{mlp_id}/stats?days=60").json()["revenue_atomic"] == "17501"
        assert client.get("/v1/models/bafynope/stats").status_code == 404

        metrics = client.get("/metrics").text
        assert f'proofmarket_calls_total{{model="{mlp_id}",rail="free",status="proved",' \
               f'system="ezkl-halo2-kzg-bn254"}} 3.0' in metrics
        assert f'proofmarket_call_seconds_count{{model="{mlp_id}",rail="free",system="ezkl-halo2-kzg-bn254"}} 3.0' \
            in metrics

    with Served(app) as served:  # the CLI reads the same document
        result = CliRunner().invoke(cli, ["stats", mlp_id, "--node", served.url, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["calls"]["total"] == 7
        text = CliRunner().invoke(cli, ["stats", mlp_id, "--node", served.url])
        assert text.exit_code == 0 and "0.0175 USDC" in text.output and "witness_failed" in text.output
        missing = CliRunner().invoke(cli, ["stats", "bafynope", "--node", served.url])
        assert missing.exit_code != 0 and "unknown_model" in missing.output + str(missing.stderr_bytes or b"")


def test_public_stats_hide_buckets_of_few_calls_and_the_owner_reads_them_all(make_app: AppFactory,
                                                                             mlp_id: str) -> None:
    """On a quiet model one call a day is one consumer's activity and spend: in public, every bucket (the window,
    a day, a rail, an error code) of fewer than k calls is hidden; the owner's signed read has every number."""
    from eth_account import Account

    from proofmarket.core.address_signature import sign_headers, sign_siwe, siwe_headers, siwe_message

    owner, stranger = Account.create(), Account.create()
    app = make_app(stats_min_calls=3)
    services = app.state.services
    services.catalog.register(mlp_id, price_atomic=10_000, owner=owner.address)
    with TestClient(app) as client:
        node = client.get("/.well-known/ai-service.json").json()["address_signature"]["node"]
        record(services, mlp_id, CallStatus.SETTLED, amount=4_321, days_ago=3)  # one consumer's one call
        quiet = client.get(f"/v1/models/{mlp_id}/stats").json()
        assert "hidden" in quiet and "calls" not in quiet and "revenue_atomic" not in quiet
        for i in range(3):
            record(services, mlp_id, CallStatus.SETTLED, amount=1_000 + i, run_s=0.1 * (i + 1))
        doc = client.get(f"/v1/models/{mlp_id}/stats").json()
        assert doc["calls"]["total"] == 4 and doc["min_calls"] == 3
        lone = doc["by_day"][-4]
        assert lone["hidden"] and lone["calls"] is None and lone["revenue_atomic"] is None
        assert doc["by_day"][-1]["calls"] == 3 and doc["calls"]["failed"] == 0
        full = client.get(f"/v1/models/{mlp_id}/stats", headers=sign_headers(owner, node, "stats")).json()
        assert full["by_day"][-4]["revenue_atomic"] == "4321" and "min_calls" not in full
        other = client.get(f"/v1/models/{mlp_id}/stats", headers=sign_headers(stranger, node, "stats"))
        assert other.status_code == 401
        # the same read signed in with Ethereum (EIP-4361): the owner reads every number
        terms = client.get("/.well-known/ai-service.json").json()["address_signature"]["siwe"]
        message = siwe_message(owner.address, terms, ["proofmarket:stats"])
        siwe = client.get(f"/v1/models/{mlp_id}/stats", headers=siwe_headers(message, sign_siwe(owner, message)))
        assert siwe.status_code == 200 and siwe.json()["by_day"][-4]["revenue_atomic"] == "4321", siwe.text


def test_the_catalogue_shows_calls_over_30_days_hidden_below_k_and_sorts_by_them(
        make_app: AppFactory, mlp_id: str, private_mlp_id: str) -> None:
    """A listing's calls over the last 30 days in the catalogue, as the public stats read them (null below k, so
    the catalogue reveals no quiet model's one consumer); ``sort=popular`` puts the most used first."""
    from proofmarket.marketplace import analytics

    app = make_app(stats_min_calls=3)
    services = app.state.services
    services.catalog.register(mlp_id, price_atomic=10_000, name="zeta-busy")
    services.catalog.register(private_mlp_id, price_atomic=10_000, name="alpha-quiet")
    for days_ago in (0, 1, 2, 40):  # three calls in the window, one outside it
        record(services, mlp_id, CallStatus.SETTLED, amount=10_000 + days_ago, days_ago=days_ago)
    for days_ago in (0, 1):
        record(services, private_mlp_id, CallStatus.SETTLED, amount=20_000 + days_ago, days_ago=days_ago)
    analytics._usage.clear()  # the counts are kept a minute: start from the rows just written
    with TestClient(app) as client:
        by_name = client.get("/v1/models", params={"sort": "name"}).json()["models"]
        assert [m["name"] for m in by_name] == ["alpha-quiet", "zeta-busy"]
        assert {m["name"]: m["calls_30d"] for m in by_name} == {"zeta-busy": 3, "alpha-quiet": None}
        popular = client.get("/v1/models", params={"sort": "popular"}).json()["models"]
        assert [m["name"] for m in popular] == ["zeta-busy", "alpha-quiet"]
