"""Discovery, health, metrics and the OpenAPI surface."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

OPERATION_IDS = {
    ("get", "/v1/auth/whoami"): "whoami",
    ("get", "/v1/purchases/{purchase_id}"): "get_purchase",
    ("post", "/v1/payouts/run"): "run_payouts",
    ("get", "/v1/ledger/check"): "check_ledger",
    ("post", "/v1/ledger/replay"): "replay_ledger",
    ("get", "/v1/nodes"): "discover_nodes",
    ("get", "/v1/ledger/unknown"): "list_unknown_outcomes",
    ("post", "/v1/ledger/unknown/{ref}"): "resolve_unknown_outcome",
    ("post", "/v1/ledger/write-off/{ref}"): "write_off_charge",
    ("get", "/v1/models"): "list_models",
    ("post", "/v1/models"): "upload_model",
    ("get", "/v1/models/{model_id}"): "get_model",
    ("get", "/v1/models/latest"): "latest_model",
    ("get", "/v1/models/{model_id}/versions"): "model_versions",
    ("get", "/v1/models/{model_id}/stats"): "model_stats",
    ("get", "/v1/models/{model_id}/registration"): "registration_plan",
    ("post", "/v1/models/{model_id}/review"): "review_model",
    ("get", "/v1/listing-policy"): "listing_policy",
    ("post", "/v1/webhooks"): "create_webhook",
    ("get", "/v1/webhooks"): "list_webhooks",
    ("delete", "/v1/webhooks/{webhook_id}"): "delete_webhook",
    ("post", "/v1/models/{model_id}/infer"): "infer",
    ("post", "/v1/models/{model_id}/generate"): "generate",
    ("get", "/v1/earnings"): "get_earnings",
    ("get", "/v1/jobs"): "list_jobs",
    ("get", "/v1/jobs/{job_id}"): "get_job",
    ("get", "/v1/calls"): "list_calls",
    ("get", "/v1/calls/{job_id}"): "get_call",
    ("get", "/v1/proofs/{cid}"): "get_proof",
    ("post", "/v1/verify"): "verify_bundle",
    ("get", "/v1/artifacts/{cid}"): "get_artifact",
    ("get", "/v1/requests"): "list_requests",
    ("get", "/v1/requests/{request_id}"): "get_request",
    ("post", "/v1/requests/{request_id}/input"): "post_request_input",
    ("get", "/v1/court/{request_id}"): "get_court_request",
    ("post", "/v1/court/{request_id}/input"): "post_court_input",
    ("get", "/v1/court/{request_id}/bundle"): "get_court_bundle",
    ("get", "/v1/channels"): "list_channels",
    ("get", "/v1/channels/refund"): "channel_refund",
    ("get", "/v1/channels/sweeps"): "list_sweeps",
    ("get", "/v1/channels/sweeps/{sweep_id}"): "get_sweep",
    ("post", "/v1/channels/sweep"): "sweep_channels",
    ("get", "/v1/channels/{channel_id}"): "get_channel",
    ("post", "/v1/keys"): "create_api_key",
    ("get", "/v1/keys"): "list_api_keys",
    ("delete", "/v1/keys/{key_id}"): "revoke_api_key",
    ("get", "/v1/credits"): "get_credits",
    ("post", "/v1/credits/buy"): "buy_credits",
    ("post", "/v1/credits/deposit"): "deposit_credits",
    ("post", "/v1/credits/refund"): "refund_credits",
    ("post", "/v1/passes/buy"): "buy_pass",
    ("get", "/v1/passes"): "list_passes",
    ("post", "/v1/models/{model_id}/free-quota"): "set_free_quota",
    ("get", "/openai/v1/models"): "openai_list_models",
    ("post", "/openai/v1/chat/completions"): "openai_chat_completions",
    ("post", "/openai/v1/completions"): "openai_completions",
    ("get", "/.well-known/ai-service.json"): "get_service_manifest",
    ("get", "/.well-known/agent-registration.json"): "get_agent_registration",
    ("get", "/health"): "health",
    ("get", "/dashboard"): "dashboard",
    ("get", "/metrics"): "metrics",
}


def test_operation_ids_are_stable(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    found = {(method, path): op["operationId"] for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert found == OPERATION_IDS


def test_well_known_service_document(client: TestClient) -> None:
    doc = client.get("/.well-known/ai-service.json").json()
    assert doc["format"] == "proofmarket/ai-service" and doc["version"] == 1
    assert doc["payments"] == {"x402": False, "rails": {}}
    assert doc["chain"] == {"name": "devnet", "chain_id": 31337}
    assert doc["proofs"]["bundle_format"] == "proofmarket/proof-bundle"
    assert doc["endpoints"]["infer"] == "http://testserver/v1/models/{model_id}/infer"
    assert doc["openapi"] == "http://testserver/openapi.json"
    assert doc["models"] == []


def test_health(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] is True and body["workers"] >= 2
    assert body["queue_depth"] == 0


def test_health_counts_the_prover_processes_warmed_up_at_start(client: TestClient) -> None:
    provers = len(client.app.state.services.queue.workers)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while (warm := client.get("/health").json()["provers_warm"]) < provers:
        assert time.monotonic() < deadline, f"{warm} of {provers} prover processes warmed up"
        time.sleep(0.05)
    assert warm == provers


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    client.get("/v1/models")
    client.get("/v1/models/nope")
    client.get("/v1/models/nope")
    text = client.get("/metrics").text
    assert 'proofmarket_http_requests_total{method="GET",route="/v1/models",status="200"} 1.0' in text
    assert 'proofmarket_http_requests_total{method="GET",route="/v1/models/{model_id}",status="404"} 2.0' in text
    for name in ("proofmarket_job_duration_seconds", "proofmarket_job_failures_total", "proofmarket_queue_depth",
                 "proofmarket_http_request_duration_seconds"):
        assert f"# TYPE {name}" in text
    assert "proofmarket_queue_depth 0.0" in text


def test_reading_jobs_proofs_and_artifacts_declares_its_credentials(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["JobToken"] == {**schemes["JobToken"], "type": "apiKey", "in": "header", "name": "X-Job-Token"}
    assert schemes["AdminToken"]["scheme"] == "bearer"
    for path in ("/v1/jobs/{job_id}", "/v1/proofs/{cid}"):
        assert doc["paths"][path]["get"]["security"] == [{"AdminToken": []}, {"JobToken": []}], path
    assert doc["paths"]["/v1/artifacts/{cid}"]["get"]["security"] == [{"AdminToken": []}]
    infer = doc["components"]["schemas"]["InferResult"]
    assert "access_token" in infer["required"]
    assert "access_token" in doc["components"]["schemas"]["JobPublic"]["properties"]


def test_agent_registration_file_without_a_market(client: TestClient) -> None:
    doc = client.get("/.well-known/agent-registration.json").json()
    assert doc["type"] == "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
    assert doc["registrations"] == [] and doc["x402Support"] is False
    assert {s["name"] for s in doc["services"]} >= {"proofmarket", "web"}
    assert "zkml" in doc["supportedTrust"]


def test_cors_is_off_by_default_and_configurable(make_app: Any) -> None:
    from fastapi.testclient import TestClient

    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "PAYMENT-SIGNATURE,X-Job-Token"}
    with TestClient(make_app()) as closed:
        assert "access-control-allow-origin" not in closed.options("/v1/models", headers=preflight).headers
    with TestClient(make_app(cors_origins="https://app.example, https://other.example")) as open_:
        answer = open_.options("/v1/models/x/infer", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert "payment-signature" in answer.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-origin" not in open_.options(
            "/v1/models", headers={**preflight, "Origin": "https://evil.example"}).headers


@pytest.mark.parametrize(("overrides", "explorer"), [
    ({}, None),  # the devnet has no explorer
    ({"chain": "base-sepolia"}, "https://sepolia.basescan.org"),  # Base's docs name Basescan for Base Sepolia
    ({"chain": "base"}, "https://basescan.org"),
    ({"rpc_url": "http://127.0.0.1:8545"}, None),  # an unnamed chain: no link guessed
])
def test_the_manifest_names_the_chains_explorer_for_the_web_apps_links(tmp_path: Any, overrides: dict[str, Any],
                                                                      explorer: str | None) -> None:
    from proofmarket.api.routers.meta import _settings_explorer
    from proofmarket.core.settings import Settings

    assert _settings_explorer(Settings(_env_file=None, home=tmp_path, **overrides)) == explorer  # type: ignore[call-arg]
