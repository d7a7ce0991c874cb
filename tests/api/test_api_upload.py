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


def test_an_upload_carries_the_weights_file_torch_writes_beside_the_model(make_app: AppFactory, tmp_path) -> None:
    """torch's default export: model.onnx names model.onnx.data. Uploaded in the field 'data', the sandboxed check
    inlines it and the node stores one self-contained model; without it the refusal says what to send."""
    import onnx

    from proofmarket.models.external import external_tensors

    model = onnx.load(str(sample_path("mlp")))
    onnx.save_model(model, str(tmp_path / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = {"onnx": ("model.onnx", (tmp_path / "model.onnx").read_bytes(), "application/octet-stream"),
            "samples": ("samples.json", sample_path("mlp", "samples").read_bytes(), "application/json")}
    weights = ("data", ("model.onnx.data", (tmp_path / "model.onnx.data").read_bytes(), "application/octet-stream"))
    form = {"price_atomic": "25000", "name": "torch-default-export"}
    with TestClient(make_app(admin_token=ADMIN_TOKEN)) as client:
        alone = client.post("/v1/models", files=base, data=form, headers=headers)
        assert alone.status_code == 422 and "field 'data'" in alone.json()["error"]["message"], alone.text
        sneaky = [*base.items(), ("data", ("../model.onnx.data", b"x", "application/octet-stream"))]
        assert client.post("/v1/models", files=sneaky, data=form, headers=headers).status_code in (400, 422)
        assert not (tmp_path.parent / "model.onnx.data").exists()  # a path in a name: only its last part is used
        answer = client.post("/v1/models", files=[*base.items(), weights], data=form, headers=headers)
        assert answer.status_code == 202, answer.text
        services = client.app.state.services  # type: ignore[attr-defined]
        spec = services.calls.repo.get(answer.json()["id"]).input
        stored = onnx.load(str(services.workspace.store.path(spec["onnx_cid"])))
        assert not any(True for _ in external_tensors(stored))  # one self-contained model, by its own CID
