"""Who may read what: a job and its proof bundles go to the holder of its access token (or the admin);
artifacts are served by the allowlist of the model's privacy profile; public job errors carry no paths."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from api_helpers import ADMIN_TOKEN, AppFactory, error_of, mlp_input
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from proofmarket import Client
from proofmarket.core.errors import ProvingError
from proofmarket.db import EscrowRepo, EscrowRequestRow, SeenRequest
from proofmarket.store import LocalStore
from proofmarket.systems.documents import BUNDLE_FORMAT
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.workspace import Workspace

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PRIVATE_PARTS = ("onnx", "circuit_onnx", "compiled", "pk")
PUBLIC_PARTS = ("settings", "vk", "srs")


def token(value: str) -> dict[str, str]:
    return {"X-Job-Token": value}


@pytest.fixture(scope="module")
def node(make_module_app: AppFactory, mlp_id: str, private_mlp_id: str) -> Iterator[TestClient]:
    """One node serving the public MLP and the private one, with uploads (the admin token) on."""
    app = make_module_app(admin_token=ADMIN_TOKEN)
    app.state.services.catalog.register(mlp_id, price_atomic=10_000)
    app.state.services.catalog.register(private_mlp_id, price_atomic=10_000)
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def make_module_app(node_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppFactory]:
    from api_helpers import node_settings

    from proofmarket.api import create_app

    apps: list[FastAPI] = []

    def make(**overrides: Any) -> FastAPI:
        app = create_app(node_settings(node_home, tmp_path_factory.mktemp("accessdb") / "node.db", **overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.services.close()


def through(client: TestClient) -> httpx.MockTransport:
    """An httpx transport for the SDK that hands each request to the app behind ``client``."""
    def send(request: httpx.Request) -> httpx.Response:
        answer = client.request(request.method, str(request.url), headers=dict(request.headers),
                                content=request.read())
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(send)


def manifest_of(client: TestClient, model_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = client.app.state.services.workspace.store.get_json(model_id)  # type: ignore[attr-defined]
    return doc


# --- results go only to their payer ------------------------------------------------------------------

def test_a_job_and_its_bundle_are_read_only_with_its_access_token(node: TestClient, mlp_id: str) -> None:
    # Given two callers' proved jobs (on different inputs: the same public input is answered with the same
    # cached proof, which is then as much the second caller's as the first's)
    mine = node.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).json()
    other = {"input_data": [[round(v + 0.125, 4) for v in mlp_input()["input_data"][0]]]}
    theirs = node.post(f"/v1/models/{mlp_id}/infer", json=other).json()
    assert mine["access_token"] and mine["access_token"] != theirs["access_token"]
    job_url, proof_url = f"/v1/jobs/{mine['job_id']}", f"/v1/proofs/{mine['bundle_cid']}"

    # Then anyone else (no token, a made-up one, the other caller's) sees neither the job nor its bundle
    for headers in ({}, token("j." + mine["job_id"] + ".forged"), token(theirs["access_token"]),
                    {"Authorization": f"Bearer {mine['access_token']}"}):
        for url in (job_url, proof_url):
            response = node.get(url, headers=headers)
            assert response.status_code == 404, (url, headers, response.text)
            assert BUNDLE_FORMAT not in response.text and str(mine["output"][0][0]) not in response.text
        assert mine["bundle_cid"] not in node.get(job_url, headers=headers).text

    # And the owner reads both, the admin too
    for headers in (token(mine["access_token"]), ADMIN):
        job = node.get(job_url, headers=headers).json()
        assert job["result"]["output"] == mine["output"] and job["result"]["bundle_cid"] == mine["bundle_cid"]
        assert job["access_token"] is None  # the token is only in the answer that created the job
        assert node.get(proof_url, headers=headers).json() == mine["bundle"]
    assert node.get(proof_url, headers=token(mine["access_token"])).headers["cache-control"].startswith("private")


def test_a_job_without_its_token_answers_like_no_job(node: TestClient, mlp_id: str) -> None:
    job_id = node.post(f"/v1/models/{mlp_id}/infer?mode=async", json=mlp_input()).json()["id"]
    existing, missing = node.get(f"/v1/jobs/{job_id}"), node.get(f"/v1/jobs/{'0' * 32}")
    assert existing.status_code == missing.status_code == 404
    assert error_of(existing)["code"] == error_of(missing)["code"] == "unknown_job"
    assert error_of(existing)["message"].replace(job_id, "ID") == error_of(missing)["message"].replace("0" * 32, "ID")


def test_the_async_answer_carries_the_token_and_the_sdk_follows_it(make_app: AppFactory, mlp_id: str,
                                                                   tmp_path: Path) -> None:
    # Given a node whose sync calls answer 202 at once (the SDK then polls the job and fetches the bundle)
    app = make_app(infer_wait_s=0.001)
    app.state.services.catalog.register(mlp_id, price_atomic=1)
    with TestClient(app) as http:
        accepted = http.post(f"/v1/models/{mlp_id}/infer", json=mlp_input())
        assert accepted.status_code == 202 and accepted.json()["access_token"]
        sdk = Client("http://testserver", transport=through(http), cache_dir=tmp_path / "cache", devnet=True,
                     poll_interval_s=0.05)
        result = sdk.infer(mlp_id, mlp_input())
        # Then the SDK got the result through its token, and can read its job and bundle again with it
        assert result.access_token and result.output and sdk.verify(result).valid
        assert sdk.job(result.job_id, result.access_token)["result"]["bundle_cid"] == result.bundle_cid
        assert sdk.proof(result.bundle_cid, result.access_token) == result.bundle
        with pytest.raises(Exception) as err:
            sdk.job(result.job_id)
        assert getattr(err.value, "code", None) == "unknown_job"


def test_an_escrow_bundle_opens_with_the_token_of_its_request(node: TestClient) -> None:
    # Given an escrow request this node fulfilled with a stored bundle
    services = node.app.state.services  # type: ignore[attr-defined]
    market = "0x" + "ab" * 20
    repo = EscrowRepo(services.db)
    cid = services.workspace.store.put_json({"format": BUNDLE_FORMAT, "note": "escrow bundle"})
    for request_id in (7, 8):
        repo.seen(SeenRequest(chain_id=31337, market=market, request_id=request_id, model_id="m",
                              commitment="0x" + "00" * 32, consumer="0x" + "cd" * 20, amount=1, deadline=2**40))
    row = repo.get(31337, market, 7)
    assert row is not None
    with services.db.session() as s:
        s.execute(update(EscrowRequestRow).where(EscrowRequestRow.id == row.id).values(bundle_cid=cid))
    previous = getattr(node.app.state, "escrow", None)
    node.app.state.escrow = SimpleNamespace(repo=repo, chain_id=31337, address=market)  # type: ignore[attr-defined]
    try:
        tokens = services.tokens
        assert node.get(f"/v1/proofs/{cid}", headers=token(tokens.escrow(31337, market, 7))).status_code == 200
        for headers in ({}, token(tokens.escrow(31337, market, 8)), token(tokens.escrow(1, market, 7))):
            assert node.get(f"/v1/proofs/{cid}", headers=headers).status_code == 404
    finally:
        node.app.state.escrow = previous  # type: ignore[attr-defined]


def test_the_dashboard_names_no_job_and_no_bundle(node: TestClient, mlp_id: str) -> None:
    body = node.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).json()
    text = node.get("/dashboard").text
    assert body["job_id"] not in text and body["job_id"][:12] not in text
    assert body["bundle_cid"] not in text and "/v1/proofs/" not in text and "/v1/jobs/" not in text


# --- artifacts by allowlist --------------------------------------------------------------------------

def test_an_independent_client_gets_only_the_public_artifacts_of_a_private_model(make_app: AppFactory,
                                                                                  private_mlp_id: str) -> None:
    # Given a node serving only the private model (the public MLP shares its ONNX file, hence its weights)
    app = make_app(admin_token=ADMIN_TOKEN)
    app.state.services.catalog.register(private_mlp_id, price_atomic=1)
    with TestClient(app) as node:
        _only_public_artifacts(node, private_mlp_id)


def _only_public_artifacts(node: TestClient, private_mlp_id: str) -> None:
    m = manifest_of(node, private_mlp_id)
    assert m["privacy"]["name"] == "private"
    public = [m[p] for p in PUBLIC_PARTS] + [m["verifier"][p] for p in ("source", "abi", "bytecode")]
    assert node.get(f"/v1/artifacts/{private_mlp_id}").status_code == 200  # the manifest
    for ref in public:
        response = node.get(f"/v1/artifacts/{ref['cid']}")
        assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == ref["sha256"]
    for part in PRIVATE_PARTS:  # the weights (ONNX, circuit, compiled circuit) and the proving key
        response = node.get(f"/v1/artifacts/{m[part]['cid']}")
        assert response.status_code == 404, part
        assert error_of(response)["code"] == "artifact_not_found"
    # the admin (or a worker holding its token) still gets the proving key
    pk = node.get(f"/v1/artifacts/{m['pk']['cid']}", headers=ADMIN)
    assert pk.status_code == 200 and hashlib.sha256(pk.content).hexdigest() == m["pk"]["sha256"]


def test_a_public_model_serves_its_weights_but_never_its_proving_key(node: TestClient, mlp_id: str) -> None:
    m = manifest_of(node, mlp_id)
    for part in ("onnx", "circuit_onnx", "compiled", *PUBLIC_PARTS):
        assert node.get(f"/v1/artifacts/{m[part]['cid']}").status_code == 200, part
    assert node.get(f"/v1/artifacts/{m['pk']['cid']}").status_code == 404


def test_stored_files_that_are_no_served_models_artifact_are_not_served(node: TestClient, mlp_id: str) -> None:
    body = node.post(f"/v1/models/{mlp_id}/infer", json=mlp_input()).json()
    assert node.get(f"/v1/artifacts/{body['bundle_cid']}").status_code == 404  # a bundle is not an artifact
    assert node.get(f"/v1/artifacts/{body['bundle_cid']}", headers=ADMIN).status_code == 200


def test_a_private_models_proof_verifies_from_public_artifacts_only(node: TestClient, private_mlp_id: str,
                                                                    tmp_path: Path) -> None:
    result = node.post(f"/v1/models/{private_mlp_id}/infer", json=mlp_input())
    assert result.status_code == 200, result.text
    sdk = Client("http://testserver", transport=through(node), cache_dir=tmp_path / "cache", devnet=True)
    assert sdk.verify(result.json()["bundle"]).valid
    cached = LocalStore(tmp_path / "cache")
    m = manifest_of(node, private_mlp_id)
    assert not any(cached.has(m[part]["cid"]) for part in PRIVATE_PARTS)


def test_export_of_a_private_model_packs_no_weights_and_no_proving_key(node_home: Path, private_mlp_id: str,
                                                                       mlp_id: str, tmp_path: Path) -> None:
    from api_helpers import node_settings

    ws = Workspace(node_settings(node_home, tmp_path / "unused.db"))
    try:
        for model_id, weights_public in ((private_mlp_id, False), (mlp_id, True)):
            car = ws.export_model(model_id, tmp_path / f"{model_id}.car")
            fresh = Workspace(node_settings(tmp_path / f"fresh-{model_id}", tmp_path / "unused.db"))
            fresh.import_car(car)
            m = manifest_of_store(ws.store, model_id)
            assert fresh.store.has(model_id) and all(fresh.store.has(m[p]["cid"]) for p in PUBLIC_PARTS)
            assert not fresh.store.has(m["pk"]["cid"])
            assert all(fresh.store.has(m[p]["cid"]) == weights_public for p in ("onnx", "circuit_onnx", "compiled"))
    finally:
        ws.close()


def manifest_of_store(store: LocalStore, model_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = store.get_json(model_id)
    return doc


# --- public job errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [
    RuntimeError("ezkl: cannot open /tmp/proofmarket-jobs/prove-x1y2/model.pk: No such file"),
    ProvingError("boom\nTraceback (most recent call last):\n  File \"/srv/pm/zk/worker.py\", line 3"),
], ids=["internal-with-path", "traceback"])
def test_a_failed_jobs_public_error_has_its_code_and_no_path_or_traceback(
        make_app: AppFactory, mlp_id: str, monkeypatch: pytest.MonkeyPatch, failure: Exception,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given a node whose prover fails with an internal message naming a temp path (or a traceback)
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(EzklProver, "prove", broken)
    app = make_app()
    app.state.services.catalog.register(mlp_id, price_atomic=1)
    with TestClient(app) as client:
        response = client.post(f"/v1/models/{mlp_id}/infer", json=mlp_input())
        error = error_of(response)
        job = client.get(f"/v1/jobs/{error['details']['job_id']}",
                         headers=token(app.state.services.tokens.job(error["details"]["job_id"]))).json()
    # Then the answer and the job show the code and one sentence, never the path or the traceback
    assert error["code"] == job["error"]["code"] == getattr(failure, "code", "internal_error")
    for message in (error["message"], job["error"]["message"]):
        assert "/tmp" not in message and "/srv" not in message and "Traceback" not in message
        assert "\n" not in message and message
    assert "/tmp" not in response.text and "Traceback" not in response.text
