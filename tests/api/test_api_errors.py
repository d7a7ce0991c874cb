"""Requests refused before any proof: one error shape, stable codes, the tree's HTTP statuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import ADMIN_TOKEN, AppFactory, error_of
from fastapi.testclient import TestClient

from proofmarket.core.errors import UsageError
from proofmarket.store import cid_for_bytes

MISSING_CID = cid_for_bytes(b"never stored")


def test_unknown_model_is_404_unknown_model(client: TestClient) -> None:
    for response in (client.get(f"/v1/models/{MISSING_CID}"),
                     client.post(f"/v1/models/{MISSING_CID}/infer", json={"input_data": [[1.0]]})):
        assert response.status_code == 404
        assert error_of(response)["code"] == "unknown_model"


def test_unknown_job_route_and_method(client: TestClient) -> None:
    assert error_of(client.get("/v1/jobs/0123456789abcdef"))["code"] == "unknown_job"
    response = client.get("/v2/nothing")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = client.delete("/v1/models")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


def test_schema_violations_are_422_invalid_request(client: TestClient) -> None:
    # Given a body that is not JSON, a bad mode, and an over-long Idempotency-Key
    url = f"/v1/models/{MISSING_CID}/infer"
    responses = [
        client.post(url, content=b"not json", headers={"content-type": "application/json"}),
        client.post(f"{url}?mode=later", json={"input_data": [[1.0]]}),
        client.post(url, json={"input_data": [[1.0]]}, headers={"Idempotency-Key": "k" * 256}),
        client.post("/v1/verify", json=[1, 2, 3]),
    ]
    for response in responses:
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["code"] == "invalid_request" and error["details"]["errors"]


@pytest.mark.parametrize("path", ["/v1/verify", f"/v1/models/{MISSING_CID}/infer"])
def test_body_over_the_limit_is_413(client: TestClient, path: str) -> None:
    big = b'{"input_data": [[' + b"0.5," * 300_000 + b'0.5]]}'  # ~1.2 MB > 1 MiB
    response = client.post(path, content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts bytes as they are read
        yield b'{"input_data": [['
        for _ in range(300):
            yield b"0.5," * 1000
        yield b"0.5]]}"

    response = client.post("/v1/verify", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


@pytest.mark.parametrize("path", [
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fnode.db",
    "%2Fetc%2Fpasswd",
    "bafkrei..%2F..%2Fstore",
    "blobs%2Fab%2F" + MISSING_CID,
    MISSING_CID + "%2F..%2F..",
    MISSING_CID.upper(),
    MISSING_CID[:-1],
])
def test_artifact_path_traversal_is_400_invalid_cid(client: TestClient, path: str) -> None:
    for route in ("/v1/artifacts/", "/v1/proofs/"):
        response = client.get(route + path)
        assert response.status_code == 400, (route, path, response.text)
        assert error_of(response)["code"] == "invalid_cid"


def test_missing_artifact_is_404(client: TestClient) -> None:
    response = client.get(f"/v1/artifacts/{MISSING_CID}")
    assert response.status_code == 404 and error_of(response)["code"] == "artifact_not_found"


def test_upload_without_admin_token_is_401(make_app: AppFactory) -> None:
    # Given uploads turned off (no token), then on with a token
    with TestClient(make_app()) as off:
        response = off.post("/v1/models", files={"onnx": ("m.onnx", b"x")})
        assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    with TestClient(make_app(admin_token=ADMIN_TOKEN)) as on:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
            response = on.post("/v1/models", files={"onnx": ("m.onnx", b"x")}, headers=headers)
            assert response.status_code == 401, headers
            assert error_of(response)["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


def test_upload_checks_the_model_before_queuing(make_app: AppFactory) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(make_app(admin_token=ADMIN_TOKEN)) as c:
        form = {"price_atomic": "10000", "samples": '{"inputs": []}'}
        response = c.post("/v1/models", files={"onnx": ("m.onnx", b"not an onnx file")}, data=form, headers=headers)
        assert response.status_code == 422 and error_of(response)["code"] == "invalid_model"
        response = c.post("/v1/models", data=form, headers=headers)
        assert response.status_code == 400 and error_of(response)["code"] == "bad_request"
        assert c.app.state.services.calls.repo.counts() == {}  # type: ignore[attr-defined]


def test_upload_over_the_upload_limit_is_413(make_app: AppFactory) -> None:
    with TestClient(make_app(admin_token=ADMIN_TOKEN, max_upload_bytes=10_000)) as c:
        response = c.post("/v1/models", files={"onnx": ("m.onnx", b"\0" * 20_000)}, data={"price_atomic": "1"},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 413 and error_of(response)["code"] == "body_too_large"


@pytest.mark.parametrize("token", ["", "changethis", "short-token"])
def test_placeholder_admin_token_is_refused_off_the_devnet(make_app: AppFactory, token: str) -> None:
    with pytest.raises(UsageError, match="PROOFMARKET_ADMIN_TOKEN"):
        make_app(admin_token=token, rpc_url="https://rpc.example.org")
    make_app(admin_token=token)  # the devnet (no RPC URL) on loopback accepts it


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "node.example.org"])
@pytest.mark.parametrize("token", ["", "changethis", "short-token"])
def test_placeholder_admin_token_is_refused_on_a_reachable_devnet_node(make_app: AppFactory, token: str,
                                                                       host: str) -> None:
    # the devnet (no RPC URL) listening beyond loopback: anyone on the network could upload with "changethis"
    with pytest.raises(UsageError, match="PROOFMARKET_ADMIN_TOKEN"):
        make_app(admin_token=token, api_host=host)
    make_app(admin_token=ADMIN_TOKEN, api_host=host)  # a real token is fine
    make_app(api_host=host)  # no token: uploads are off, nothing to guard


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_are_loopback(host: str) -> None:
    from proofmarket.api.security import is_loopback

    assert is_loopback(host)


def test_payments_on_with_a_dead_chain_refuses_to_start(make_app: AppFactory) -> None:
    # payments on build the x402 gate (tests/payments/exact runs it on anvil); a chain that does not answer stops
    # the node
    from proofmarket.chain.devnet import free_port
    from proofmarket.core.errors import RPCUnavailable

    with pytest.raises(RPCUnavailable):
        make_app(payments="on", rpc_url=f"http://127.0.0.1:{free_port()}")


def test_upload_takes_npy_and_csv_samples_and_refuses_a_partial_sample(make_app: AppFactory) -> None:
    """Sample files as people have them (.npy, .csv) are read against the model's input before the job is
    queued; values that do not split into whole samples are refused at once (nothing is queued)."""
    import io

    import numpy as np

    from proofmarket.samples import sample_path

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    onnx_file = ("mlp.onnx", sample_path("mlp").read_bytes())
    with TestClient(make_app(admin_token=ADMIN_TOKEN)) as c:
        buf = io.BytesIO()
        np.save(buf, np.zeros((3, 5), np.float32))  # 15 values: not a whole number of 8-value samples
        response = c.post("/v1/models", files={"onnx": onnx_file, "samples": ("s.npy", buf.getvalue())},
                          data={"price_atomic": "10000"}, headers=headers)
        assert response.status_code == 422 and error_of(response)["code"] == "sample_count_not_whole"
        bad_csv = "1,2,3\n"
        response = c.post("/v1/models", files={"onnx": onnx_file, "samples": ("s.csv", bad_csv.encode())},
                          data={"price_atomic": "10000"}, headers=headers)
        assert response.status_code == 422 and error_of(response)["code"] == "sample_count_not_whole"
        assert c.app.state.services.calls.repo.counts() == {}  # type: ignore[attr-defined]
