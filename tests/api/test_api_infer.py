"""Inference over HTTP with real proofs on the sample MLP (compiled once per session)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from api_helpers import AppFactory, error_of, mlp_input, wait_job
from fastapi.testclient import TestClient

from proofmarket.store import LocalStore, canonical_json, cid_for_bytes
from proofmarket.systems.ezkl.verify import verify_bundle

pytestmark = pytest.mark.slow
INFER_KEYS = {"job_id", "status", "model_id", "output", "bundle_cid", "bundle", "payment", "receipt", "salt",
              "access_token", "mode", "system", "guarantee"}


def store_of(client: TestClient) -> LocalStore:
    store: LocalStore = client.app.state.services.workspace.store  # type: ignore[attr-defined]
    return store


def job_count(client: TestClient) -> int:
    counts: dict[str, int] = client.app.state.services.calls.repo.counts()  # type: ignore[attr-defined]
    return sum(counts.values())


def test_list_and_get_model(mlp_client: TestClient, mlp_id: str) -> None:
    listed = mlp_client.get("/v1/models").json()["models"]
    assert [m["id"] for m in listed] == [mlp_id]
    assert listed[0]["price"] == {"atomic": "10000", "amount": "0.01", "asset": "USDC", "decimals": 6}
    model = mlp_client.get(f"/v1/models/{mlp_id}").json()
    assert model["privacy"] == "public" and model["privacy_profile"]["input"] == "public"
    assert model["inputs"] == [{"name": "x", "shape": [1, 8], "dtype": "float32"}]
    assert model["outputs"][0]["shape"] == [1, 3]
    manifest = store_of(mlp_client).get_json(mlp_id)
    assert model["commitments"]["onnx_sha256"] == manifest["onnx"]["sha256"]
    assert model["commitments"]["vk_digest"] == manifest["vk"]["sha256"]
    assert model["verifier"]["bytecode_cid"] == manifest["verifier"]["bytecode"]["cid"]
    assert model["verifier"]["address"] is None
    doc = mlp_client.get("/.well-known/ai-service.json").json()
    assert [m["id"] for m in doc["models"]] == [mlp_id]
    assert doc["models"][0]["infer"] == f"http://testserver/v1/models/{mlp_id}/infer"


def test_sync_infer_returns_a_bundle_that_verifies(mlp_client: TestClient, mlp_id: str) -> None:
    response = mlp_client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == INFER_KEYS
    assert body["status"] == "proved" and body["payment"] is None and body["receipt"] is None
    assert (body["mode"], body["system"]) == ("proven", "ezkl-halo2-kzg-bn254")
    assert "zero-knowledge" in body["guarantee"]
    bundle = body["bundle"]
    assert body["bundle_cid"] == cid_for_bytes(canonical_json(bundle))
    assert body["output"] == bundle["output"]["values"]
    report = verify_bundle(bundle, store_of(mlp_client))
    assert report.valid and report.model_id == mlp_id
    # the same bundle is served by CID to the job's token, and the node's own verifier agrees
    owner = {"X-Job-Token": body["access_token"]}
    assert mlp_client.get(f"/v1/proofs/{body['bundle_cid']}", headers=owner).json() == bundle
    verdict = mlp_client.post("/v1/verify", json=bundle).json()
    assert verdict["valid"] is True and verdict["model_id"] == mlp_id and verdict["warnings"]


def test_verify_a_tampered_bundle_is_200_valid_false(mlp_client: TestClient, mlp_id: str) -> None:
    bundle: dict[str, Any] = mlp_client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).json()["bundle"]
    bundle["output"]["values"][0][0] += 1.0
    verdict = mlp_client.post("/v1/verify", json=bundle).json()
    assert verdict["valid"] is False and verdict["code"] == "proof_invalid" and verdict["reason"]


def test_async_mode_answers_202_then_the_job_is_polled(mlp_client: TestClient, mlp_id: str) -> None:
    response = mlp_client.post(f"/v1/models/{mlp_id}/infer?mode=async", json=mlp_input())
    assert response.status_code == 202
    job = response.json()
    assert job["status"] in ("queued", "running", "proved") and response.headers["location"] == f"/v1/jobs/{job['id']}"
    done = wait_job(mlp_client, job["id"], token=job["access_token"])
    assert done["status"] == "proved" and done["attempts"] == 1 and done["error"] is None
    cid = done["result"]["bundle_cid"]
    assert done["links"]["proof"] == f"/v1/proofs/{cid}"
    owner = {"X-Job-Token": job["access_token"]}
    assert verify_bundle(mlp_client.get(f"/v1/proofs/{cid}", headers=owner).json(), store_of(mlp_client)).valid


def test_idempotency_key_returns_the_same_job(mlp_client: TestClient, mlp_id: str) -> None:
    url, headers = f"/v1/models/{mlp_id}/infer", {"Idempotency-Key": "retry-me-1"}
    before = job_count(mlp_client)
    first = mlp_client.post(f"{url}?mode=async", json=mlp_input(), headers=headers)
    second = mlp_client.post(url, json=mlp_input(), headers=headers)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["job_id"] == first.json()["id"]
    assert second.json()["access_token"] == first.json()["access_token"]  # the retry gets the same token
    third = mlp_client.post(url, json=mlp_input(), headers=headers)
    assert third.json()["job_id"] == first.json()["id"] and third.json()["bundle_cid"] == second.json()["bundle_cid"]
    assert job_count(mlp_client) == before + 1
    # the same key for a different request is refused
    other = {"input_data": [[0.0] * 8]}
    conflict = mlp_client.post(url, json=other, headers=headers)
    assert conflict.status_code == 409 and error_of(conflict)["code"] == "idempotency_conflict"


@pytest.mark.parametrize(("doc", "code"), [
    ({"input_data": [[1.0, 2.0]]}, "input_shape"),
    ({"input_data": [[float("nan")] * 8]}, "input_not_finite"),
    ({"input_data": [["a"] * 8]}, "invalid_input"),
    ({"inputs": {"y": [[0.0] * 8]}}, "invalid_input"),
    ({"something": 1}, "invalid_input"),
])
def test_malformed_input_is_422_and_nothing_is_proved(mlp_client: TestClient, mlp_id: str, doc: dict[str, Any],
                                                      code: str) -> None:
    before = job_count(mlp_client)
    raw = json.dumps(doc).encode()  # json.dumps writes NaN as the bare token clients like numpy's send
    response = mlp_client.post(f"/v1/models/{mlp_id}/infer", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert error_of(response)["code"] == code
    assert job_count(mlp_client) == before


def test_artifacts_stream_public_keys_but_not_the_proving_key(mlp_client: TestClient, mlp_id: str) -> None:
    manifest = store_of(mlp_client).get_json(mlp_id)
    for ref in (manifest["vk"], manifest["settings"], manifest["onnx"]):
        response = mlp_client.get(f"/v1/artifacts/{ref['cid']}")
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == ref["sha256"]
        assert response.headers["etag"] == f'"{ref["cid"]}"'
    response = mlp_client.get(f"/v1/artifacts/{manifest['pk']['cid']}")
    assert response.status_code == 404 and error_of(response)["code"] == "artifact_not_found"


def test_metrics_after_proofs(mlp_client: TestClient, mlp_id: str) -> None:
    mlp_client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input())
    text = mlp_client.get("/metrics").text
    count = next(line for line in text.splitlines()
                 if line.startswith('proofmarket_job_duration_seconds_count{kind="prove"}'))
    assert float(count.split()[-1]) >= 1
    assert 'proofmarket_jobs_finished_total{kind="prove",status="proved"}' in text
    assert 'route="/v1/models/{model_id}/infer",status="200"' in text


def test_a_failed_proof_answers_its_code_and_is_counted(make_app: AppFactory, mlp_id: str) -> None:
    # Given a node whose proofs time out at once
    app = make_app(proof_timeout_s=0.001)
    app.state.services.catalog.register(mlp_id, price_atomic=1)
    with TestClient(app) as client:
        response = client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input())
        assert response.status_code == 504
        error = error_of(response)
        assert error["code"] == "proof_timeout" and error["details"]["job_id"]
        job = wait_job(client, error["details"]["job_id"])
        assert job["status"] == "failed" and job["error"]["code"] == "proof_timeout" and job["result"] is None
        text = client.get("/metrics").text
        assert 'proofmarket_job_failures_total{code="proof_timeout",kind="prove"} 1.0' in text


def test_sync_infer_answers_202_when_the_proof_outlasts_the_wait(make_app: AppFactory, mlp_id: str) -> None:
    app = make_app(infer_wait_s=0.001)
    app.state.services.catalog.register(mlp_id, price_atomic=1)
    with TestClient(app) as client:
        response = client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input())
        assert response.status_code == 202 and response.json()["kind"] == "prove"
        assert wait_job(client, response.json()["id"])["status"] == "proved"


def test_a_repeated_public_call_is_answered_from_the_proof_cache(mlp_client: TestClient, mlp_id: str) -> None:
    import re

    def hits() -> float:
        found = re.search(r'proofmarket_proof_cache_total\{result="hit"\} ([0-9.]+)', mlp_client.get("/metrics").text)
        return float(found.group(1)) if found else 0.0

    before = hits()
    first = mlp_client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).json()
    again = mlp_client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).json()
    assert again["job_id"] != first["job_id"] and again["bundle_cid"] == first["bundle_cid"]
    assert again["output"] == first["output"] and hits() >= before + 1
    assert verify_bundle(again["bundle"], store_of(mlp_client)).valid
