"""An owner uploads ONNX + samples + price: the model compiles as a job (child process), then is served."""

from __future__ import annotations

import pytest
from api_helpers import ADMIN_TOKEN, AppFactory, mlp_input, wait_job
from fastapi.testclient import TestClient

from proofmarket.samples import sample_path

pytestmark = pytest.mark.slow


def test_upload_compiles_as_a_job_and_the_model_is_served(make_app: AppFactory) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Idempotency-Key": "upload-1"}
    files = {"onnx": ("mlp.onnx", sample_path("mlp").read_bytes(), "application/octet-stream"),
             "samples": ("samples.json", sample_path("mlp", "samples").read_bytes(), "application/json")}
    data = {"price_atomic": "25000", "name": "iris-mlp", "owner": "0x" + "12" * 20}
    with TestClient(make_app(admin_token=ADMIN_TOKEN)) as client:
        # When the owner uploads (and retries with the same key)
        response = client.post("/v1/models", files=files, data=data, headers=headers)
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["kind"] == "compile" and job["model_id"] is None
        retry = client.post("/v1/models", files=files, data=data, headers=headers)
        assert retry.json()["id"] == job["id"]

        # Then the compile job ends proved with the model id, and the model is served at its price
        done = wait_job(client, job["id"], timeout_s=600)
        assert done["status"] == "proved", done
        model_id = done["result"]["model_id"]
        assert done["model_id"] == model_id and done["result"]["logrows"] >= 1
        model = client.get(f"/v1/models/{model_id}").json()
        assert model["name"] == "iris-mlp" and model["price"]["atomic"] == "25000"
        assert model["owner"] == "0x" + "12" * 20
        assert client.post(f"/v1/models/{model_id}/infer", json=mlp_input()).status_code == 200
