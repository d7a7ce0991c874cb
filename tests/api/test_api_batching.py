"""Calls that opted in (``?batch=allow``) and queue together on a node share one proof; each caller gets and verifies
its own slot; a caller that did not opt in is proven alone, and its answer holds nothing of another caller's input or
output (the fifth review: batching was on by default); a call alone never waits for company."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import MLP_CANDIDATE, AppFactory, node_settings, wait_job
from fastapi.testclient import TestClient

from proofmarket.samples import sample_path
from proofmarket.sdk.checks import Request, check_answer
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.verify import verify_bundle
from proofmarket.systems.ids import PROVEN_SYSTEM
from proofmarket.systems.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batched_id(node_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    ws = Workspace(node_settings(node_home, tmp_path_factory.mktemp("db") / "unused.db"))
    try:
        samples = json.loads(sample_path("mlp", "samples").read_text())
        options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(ws.settings.srs_dir),
                                 candidates=[MLP_CANDIDATE], batch_sizes=(2, 4))
        result = ws.prover.compile(sample_path("mlp"), samples, options)
        assert [b.size for b in result.manifest.batches] == [2, 4]
        return result.model_id
    finally:
        ws.close()


@pytest.fixture
def client(make_app: AppFactory, batched_id: str) -> Iterator[TestClient]:
    app = make_app(batch_window_ms=20, proof_cache_size=0)
    app.state.services.catalog.register(batched_id, price_atomic=10_000)
    with TestClient(app) as c:
        yield c


def _inputs() -> list[dict[str, Any]]:
    return [{"inputs": s} for s in json.loads(sample_path("mlp", "samples").read_text())["inputs"]]


def _held(client: TestClient) -> Any:
    """The prover process's lock: held, the node's one prover thread blocks on its first call while others queue."""
    return _held_app(client.app)


def _submit(client: TestClient, model_id: str, doc: dict[str, Any], allow: bool = True) -> dict[str, Any]:
    url = f"/v1/models/{model_id}/infer?mode=async" + ("&batch=allow" if allow else "")
    response = client.post(url, json=doc)
    assert response.status_code == 202, response.text
    return response.json()


def test_calls_queued_together_share_a_proof_and_each_verifies_its_own_slot(client: TestClient,
                                                                           batched_id: str) -> None:
    docs = _inputs()[:5]
    store = client.app.state.services.workspace.store  # type: ignore[attr-defined]
    lock = _held(client)
    with lock:
        jobs = [_submit(client, batched_id, doc) for doc in docs]
    done = [wait_job(client, job["id"], token=job["access_token"]) for job in jobs]
    bundles = [ProofBundle.parse(store.get_json(job["result"]["bundle_cid"])) for job in done]
    shared = [b for b in bundles if b.batch is not None]
    assert len(shared) == 4 and {b.batch.slot for b in shared if b.batch} == {0, 1, 2, 3}  # the 4 queued calls
    assert len({b.proof.hex for b in shared}) == 1
    for bundle, doc, job in zip(bundles, docs, done, strict=True):
        assert verify_bundle(bundle, store).valid
        check_answer(bundle, store, Request(model_id=batched_id, inputs=doc))  # its own input, nobody else's
        assert job["result"]["output"] == bundle.output.values
        verdict = client.post("/v1/verify", json=bundle.to_doc()).json()
        assert verdict["valid"] is True


def test_a_caller_that_does_not_opt_in_is_proven_alone(client: TestClient, batched_id: str) -> None:
    docs = _inputs()[:4]
    store = client.app.state.services.workspace.store  # type: ignore[attr-defined]
    with _held(client):
        first = _submit(client, batched_id, docs[0])
        refused = _submit(client, batched_id, docs[1], allow=False)
        others = [_submit(client, batched_id, doc) for doc in docs[2:]]
    done = {job["id"]: wait_job(client, job["id"], token=job["access_token"]) for job in [first, refused, *others]}
    bundle_of = {job_id: store.get_json(job["result"]["bundle_cid"]) for job_id, job in done.items()}
    assert "batch" not in bundle_of[refused["id"]]  # proven alone while the calls around it shared a proof
    assert [bundle_of[job["id"]]["batch"]["size"] for job in others] == [2, 2]
    assert verify_bundle(bundle_of[refused["id"]], store).valid


def test_callers_who_did_not_opt_in_see_nothing_of_each_other(client: TestClient, batched_id: str) -> None:
    """Strangers calling the same model at the same moment, by default: each proven alone; no answer or bundle holds
    another caller's input or output, or the node's host name or process id."""
    docs = _inputs()[:3]
    store = client.app.state.services.workspace.store  # type: ignore[attr-defined]
    with _held(client):
        jobs = [_submit(client, batched_id, doc, allow=False) for doc in docs]
    done = [wait_job(client, job["id"], token=job["access_token"]) for job in jobs]
    for job, doc in zip(done, docs, strict=True):
        bundle = store.get_json(job["result"]["bundle_cid"])
        assert "batch" not in bundle
        check_answer(ProofBundle.parse(bundle), store, Request(model_id=batched_id, inputs=doc))  # its own input
        layout = bundle["layout"]  # its instances are one call's: no other slot's input or output is in them
        assert len(bundle["proof"]["instances"]) == layout["input"] + layout["params"] + layout["output"]
        assert job["result"]["output"] == bundle["output"]["values"]
        assert set(bundle["prover"]) == {"address"}  # nothing of the machine that proved it


def test_callers_who_both_opted_in_never_share_a_proof(client: TestClient, batched_id: str) -> None:
    """Two callers (two client addresses) allow batching and call at the same moment: each caller's calls share a
    proof, never with the other's; no bundle of one holds the other's input or output."""
    docs = _inputs()[:5]
    store = client.app.state.services.workspace.store  # type: ignore[attr-defined]
    stranger = TestClient(client.app, client=("203.0.113.7", 50001))  # the same node, another caller
    with _held(client):
        _submit(client, batched_id, docs.pop(), allow=False)  # what the held prover takes first, alone
        mine = [_submit(client, batched_id, doc) for doc in docs[:2]]
        theirs = [_submit(stranger, batched_id, doc) for doc in docs[2:]]
    done = [wait_job(client, job["id"], token=job["access_token"]) for job in [*mine, *theirs]]
    bundles = [ProofBundle.parse(store.get_json(job["result"]["bundle_cid"])) for job in done]
    assert all(b.batch is not None and b.batch.size == 2 for b in bundles)  # each caller's two calls: one proof
    assert bundles[0].proof.hex == bundles[1].proof.hex and bundles[2].proof.hex == bundles[3].proof.hex
    assert bundles[0].proof.hex != bundles[2].proof.hex
    theirs_values = {json.dumps(v) for b in bundles[2:] for v in (b.output.values, b.input.values)}
    for bundle, doc in zip(bundles, docs, strict=True):
        check_answer(bundle, store, Request(model_id=batched_id, inputs=doc))
    assert not {json.dumps(v) for b in bundles[:2] for v in (b.output.values, b.input.values)} & theirs_values


def test_a_call_alone_is_proven_alone_and_does_not_wait(client: TestClient, batched_id: str) -> None:
    body = client.post(f"/v1/models/{batched_id}/infer", json=_inputs()[0]).json()
    assert "batch" not in body["bundle"] and body["status"] == "proved"
    job = client.get(f"/v1/jobs/{body['job_id']}", headers={"X-Job-Token": body["access_token"]}).json()
    assert job["status"] == "proved"


def test_the_in_page_verifier_checks_a_slot_as_the_sdk_does(make_app: AppFactory, batched_id: str,
                                                            tmp_path: Path) -> None:
    import httpx
    from served import Served
    from test_api_webapp_outputs import _verify_in_node  # the page's verifier in Node, as that suite runs it

    app = make_app(batch_window_ms=20, proof_cache_size=0)
    app.state.services.catalog.register(batched_id, price_atomic=10_000)
    store = app.state.services.workspace.store
    with Served(app) as node:
        with _held_app(app):
            jobs = [httpx.post(f"{node.url}/v1/models/{batched_id}/infer?mode=async&batch=allow", json=doc,
                               timeout=30).json()
                    for doc in _inputs()[:3]]
        with httpx.Client(base_url=node.url, timeout=30) as http:
            done = [wait_job(http, job["id"], token=job["access_token"]) for job in jobs]
        bundles = [store.get_json(job["result"]["bundle_cid"]) for job in done]
        shared = [b for b in bundles if "batch" in b]
        assert [b["batch"]["slot"] for b in shared] == [0, 1]
        for i, bundle in enumerate(shared):
            path = tmp_path / f"slot-{i}.json"
            path.write_text(json.dumps(bundle))
            assert _verify_in_node(node.url, path)["valid"] is True
        swapped = {**shared[0], "batch": {"size": 2, "slot": 1}}
        path = tmp_path / "swapped.json"
        path.write_text(json.dumps(swapped))
        result = _verify_in_node(node.url, path)
        assert result["valid"] is False and "does not match" in str(result["error"]), result


def _held_app(app: Any) -> Any:
    """``_held`` of an app."""
    return app.state.services.queue.workers[0].get(PROVEN_SYSTEM).prover.worker._lock
