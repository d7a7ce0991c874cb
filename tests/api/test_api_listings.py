"""Owners list models with their wallet (no admin token) under the node's policy and quotas; the catalogue is
searched with filters and pages; versions form a line the SDK follows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import ADMIN_TOKEN, AppFactory, error_of, mlp_input, wait_job
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from proofmarket.core.errors import ModelOwnedByOther
from proofmarket.core.listing_request import new_request
from proofmarket.samples import sample_path
from proofmarket.sdk.client import Client

OWNER: LocalAccount = Account.from_key("0x" + "a1" * 32)
OTHER: LocalAccount = Account.from_key("0x" + "b2" * 32)
META = {"description": "Iris species from four flower measurements", "task": "classification",
        "tags": ["tabular", "iris"], "license": "MIT",
        "inputs": [{"name": "x", "type": "float32", "unit": "cm", "description": "sepal and petal sizes"}]}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Through(httpx.BaseTransport):
    """The SDK's requests sent to an in-process app through its TestClient."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.request(request.method, request.url.path, params=request.url.params,
                                     headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                                     content=request.read())
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def sdk(client: TestClient, account: LocalAccount | None = OWNER) -> Client:
    return Client("http://testserver", account=account, transport=Through(client), poll_interval_s=0.2)


def signed_form(client: TestClient, account: LocalAccount = OWNER, *, price: int = 25_000, name: str = "iris",
                metadata: bytes = b"", supersedes: str = "", deadline_s: int = 600, node: str | None = None,
                signer: LocalAccount | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    onnx = sample_path("mlp").read_bytes()
    node = node or client.get("/v1/listing-policy").json()["node"]
    request = new_request(account.address, node, onnx, name=name, price_atomic=price, metadata=metadata,
                          supersedes=supersedes, valid_s=deadline_s)
    form = {"price_atomic": str(price), "name": name, "owner": account.address, "deadline": str(request.deadline),
            "nonce": request.nonce, "signature": request.sign(signer or account),
            "samples": sample_path("mlp", "samples").read_text()}
    if metadata:
        form["metadata"] = metadata.decode()
    if supersedes:
        form["supersedes"] = supersedes
    return form, {"onnx": ("mlp.onnx", onnx, "application/octet-stream")}


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code, error
    return error


# --- refusals (no compile) ---------------------------------------------------------------------------------
@pytest.fixture
def open_node(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app(listing_policy="open")) as client:
        yield client


def test_an_upload_without_token_or_signature_is_refused(open_node: TestClient) -> None:
    form, files = signed_form(open_node)
    del form["signature"]
    error = refused(open_node.post("/v1/models", data=form, files=files), 401, "unauthorized")
    assert "signature" in error["message"]


@pytest.mark.parametrize("tamper", ["price", "name", "metadata", "owner", "another signer", "another node",
                                    "expired", "far deadline", "malformed"])
def test_a_listing_request_that_is_not_the_owners_signature_is_refused(open_node: TestClient, tamper: str) -> None:
    form, files = signed_form(open_node, metadata=json.dumps(META).encode(),
                              signer=OTHER if tamper == "another signer" else None,
                              node="0x" + "00" * 20 if tamper == "another node" else None,
                              deadline_s={"expired": -5, "far deadline": 7200}.get(tamper, 600))
    if tamper == "price":
        form["price_atomic"] = "1"
    elif tamper == "name":
        form["name"] = "not-iris"
    elif tamper == "metadata":
        form["metadata"] = json.dumps({**META, "license": "GPL-3.0"})
    elif tamper == "owner":
        form["owner"] = OTHER.address
    elif tamper == "malformed":
        form["signature"] = "0x1234"
    refused(open_node.post("/v1/models", data=form, files=files), 401, "listing_signature_invalid")
    assert open_node.get("/v1/models?status=any").json()["models"] == []


@pytest.mark.parametrize(("overrides", "code"), [
    ({"listing_policy": "off"}, "listing_not_allowed"),
    ({"listing_policy": "allowlist", "listing_owners": OTHER.address}, "listing_not_allowed"),
    ({"listing_policy": "open", "owner_max_models": 0}, "owner_quota_exceeded"),
    ({"listing_policy": "open", "owner_max_bytes": 100}, "owner_quota_exceeded"),
    ({"listing_policy": "open", "owner_compile_s_per_day": 0}, "owner_quota_exceeded"),
])
def test_policy_and_quotas_refuse_with_their_codes(make_app: AppFactory, overrides: dict[str, Any], code: str) -> None:
    with TestClient(make_app(**overrides)) as client:
        form, files = signed_form(client)
        error = refused(client.post("/v1/models", data=form, files=files), 403, code)
        if code == "owner_quota_exceeded":
            assert error["details"]["quota"] in ("models", "bytes", "compile_seconds")
            assert "limit" in error["details"]
        assert client.get("/v1/models?status=any").json()["models"] == []  # nothing stored


def test_parallel_uploads_of_one_owner_pass_the_quota_once(make_app: AppFactory) -> None:
    """Admission checks the quotas and counts the upload in one step (one at a time on every node of the database):
    four uploads at once, each signed, on a quota of one listing give one 202. An admitted upload refused afterwards
    (bad samples) stops counting."""
    from concurrent.futures import ThreadPoolExecutor

    with TestClient(make_app(listing_policy="open", owner_max_models=1)) as client:
        form, files = signed_form(client)
        form["samples"] = '{"inputs": [[1.0]]}'  # the wrong shape: refused after admission
        bad = client.post("/v1/models", data=form, files=files)
        assert 400 <= bad.status_code < 500 and bad.status_code != 403, bad.text
        forms = [signed_form(client) for _ in range(4)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda f: client.post("/v1/models", data=f[0], files=f[1]), forms))
        codes = sorted(a.status_code for a in answers)
        assert codes == [202, 403, 403, 403], [a.text[:200] for a in answers]
        assert {error_of(a)["code"] for a in answers if a.status_code == 403} == {"owner_quota_exceeded"}


def test_invalid_metadata_and_another_owners_version_are_refused(open_node: TestClient) -> None:
    form, files = signed_form(open_node, metadata=b'{"task": "astrology"}')
    refused(open_node.post("/v1/models", data=form, files=files), 422, "invalid_metadata")
    form, files = signed_form(open_node, metadata=b'{"tags": ["Not A Tag!"]}')
    refused(open_node.post("/v1/models", data=form, files=files), 422, "invalid_metadata")
    form, files = signed_form(open_node, supersedes="bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
    refused(open_node.post("/v1/models", data=form, files=files), 422, "invalid_supersedes")


def test_a_signed_request_opens_one_upload(open_node: TestClient) -> None:
    form, files = signed_form(open_node)
    first = open_node.post("/v1/models", data=form, files=files)
    assert first.status_code == 202, first.text
    refused(open_node.post("/v1/models", data=form, files=files), 409, "listing_replayed")


def test_the_listing_policy_names_what_an_owner_signs(open_node: TestClient) -> None:
    doc = open_node.get("/v1/listing-policy").json()
    assert doc["policy"] == "open" and doc["eip712"]["primaryType"] == "ListingRequest"
    assert [f["name"] for f in doc["eip712"]["types"]["ListingRequest"]][:3] == ["owner", "node", "modelSha256"]
    assert doc["node"].startswith("0x") and "classification" in doc["tasks"]


# --- an owner's listing end to end (one compile) -----------------------------------------------------------
@pytest.mark.slow
def test_an_owner_lists_under_review_and_the_operator_decides(make_app: AppFactory) -> None:
    with TestClient(make_app(listing_policy="review", admin_token=ADMIN_TOKEN)) as client:
        node = sdk(client)
        job = node.list_model(sample_path("mlp"), json.loads(sample_path("mlp", "samples").read_text()),
                              price_atomic=25_000, name="iris-mlp", metadata=META)
        assert job["kind"] == "compile" and job["access_token"]
        done = wait_job(client, job["id"], timeout_s=600, token=job["access_token"])
        assert done["status"] == "proved", done
        model_id = done["result"]["model_id"]

        # pending: listed with its entry, not sold, not in the catalogue's default search
        model = client.get(f"/v1/models/{model_id}").json()
        assert model["status"] == "pending" and model["owner"].lower() == OWNER.address.lower()
        assert model["task"] == "classification" and model["tags"] == ["tabular", "iris"] and model["catalog_cid"]
        assert client.get("/v1/models").json()["models"] == []
        assert [m["id"] for m in client.get("/v1/models?status=pending").json()["models"]] == [model_id]
        refused(client.post(f"/v1/models/{model_id}/infer", json=mlp_input()), 409, "model_pending")

        # only the admin reviews
        assert client.post(f"/v1/models/{model_id}/review", json={"decision": "approve"}).status_code == 401
        rejected = client.post(f"/v1/models/{model_id}/review", headers=ADMIN,
                               json={"decision": "reject", "reason": "no license file"})
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
        error = refused(client.post(f"/v1/models/{model_id}/infer", json=mlp_input()), 409, "model_rejected")
        assert "no license file" in error["message"]
        client.post(f"/v1/models/{model_id}/review", headers=ADMIN, json={"decision": "approve"})

        # approved: found by the catalogue's search, called
        found = node.search("iris species", task="classification", tag=["tabular"], max_price="0.03")
        assert [m["id"] for m in found["models"]] == [model_id]
        assert node.search("iris", max_price="0.01")["models"] == []
        assert client.post(f"/v1/models/{model_id}/infer", json=mlp_input()).status_code == 200

        # another wallet cannot take the listing over by uploading the same file
        other = sdk(client, OTHER).list_model(sample_path("mlp"), sample_path("mlp", "samples").read_text(),
                                             price_atomic=1, name="iris-mlp")
        copy = wait_job(client, other["id"], timeout_s=600, token=other["access_token"])
        # the same manifest is the same id: refused; a compile tuned otherwise is another listing, the other's
        assert (copy["status"] == "failed" and copy["error"]["code"] == "model_exists") or (
            copy["status"] == "proved" and copy["result"]["model_id"] != model_id), copy
        assert client.get(f"/v1/models/{model_id}").json()["owner"].lower() == OWNER.address.lower()


# --- search and versions over many listings (no compile: copies of one compiled manifest) ----------------
def listings(client: TestClient, mlp_id: str, count: int) -> list[str]:
    """``count`` listings of distinct ids (the compiled MLP's manifest under other names), with entries."""
    services = client.app.state.services  # type: ignore[attr-defined]
    store = services.workspace.store
    manifest = store.get_json(mlp_id)
    ids = []
    for i in range(count):
        model_id = store.put_json({**manifest, "name": f"model-{i:02d}"})
        owner = (OWNER if i % 2 == 0 else OTHER).address
        entry = {"description": f"listing number {i}", "task": "classification" if i % 3 == 0 else "regression",
                 "tags": ["even" if i % 2 == 0 else "odd", f"group-{i % 5}"]}
        services.catalog.repo.upsert(model_id, name=f"model-{i:02d}", price_atomic=1000 + i, owner=owner,
                                     catalog=entry)
        time.sleep(0.002)  # distinct creation times: "newest" is well defined
        ids.append(model_id)
    return ids


def test_search_filters_and_pages_over_fifty_listings(make_app: AppFactory, mlp_id: str) -> None:
    with TestClient(make_app()) as client:
        ids = listings(client, mlp_id, 50)
        node = sdk(client, None)

        # every listing once over pages of 7, newest first
        seen = [m["id"] for m in node.search_all(limit=7)]
        assert seen == list(reversed(ids))
        first = node.search(limit=7)
        assert first["total"] == 50 and len(first["models"]) == 7 and first["next_cursor"]

        # filters combine; counts are what the listings say
        even_cls = node.search(task="classification", tag=["even"], limit=100)
        assert {m["id"] for m in even_cls["models"]} == {ids[i] for i in range(50) if i % 6 == 0}
        cheap = node.search(max_price="0.00101", sort="price", limit=100)["models"]
        assert [m["price"]["atomic"] for m in cheap] == ["1000", "1001", "1002", "1003", "1004", "1005", "1006",
                                                         "1007", "1008", "1009", "1010"]
        assert {m["id"] for m in node.search_all(owner=OTHER.address)} == set(ids[1::2])
        assert [m["id"] for m in node.search("number 17")["models"]] == [ids[17]]
        assert node.search(min_reputation=50)["models"] == []  # no market: no prover reputation
        assert [m["price"]["atomic"] for m in node.search(sort="-price", limit=2)["models"]] == ["1049", "1048"]

        # a cursor is the query's own
        cursor = first["next_cursor"]
        refused(client.get("/v1/models", params={"cursor": cursor, "task": "regression"}), 400, "invalid_cursor")
        refused(client.get("/v1/models", params={"cursor": "garbage"}), 400, "invalid_cursor")
        refused(client.get("/v1/models", params={"limit": 1000}), 422, "invalid_request")


def test_a_version_line_is_followed_by_the_sdk(make_app: AppFactory, mlp_id: str) -> None:
    with TestClient(make_app()) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        repo = services.catalog.repo
        v1, v2, v3, foreign = listings(client, mlp_id, 4)
        for model_id, before in ((v1, None), (v2, v1), (v3, v2)):
            repo.upsert(model_id, name="iris", price_atomic=1000, owner=OWNER.address, supersedes=before)
        repo.upsert(foreign, name="iris", price_atomic=1000, owner=OTHER.address, supersedes=v3)  # not OWNER's

        node = sdk(client, None)
        line = node.versions(v1)
        assert [v["id"] for v in line["versions"]] == [v1, v2, v3] and line["latest"] == v3
        assert node.latest(OWNER.address, "iris") == v3
        assert node.latest(OTHER.address, "iris") == foreign

        # the newest version under review is not followed: the latest sold one is
        repo.review(v3, "pending", None)
        assert node.latest(OWNER.address, "iris") == v2
        result = node.infer_latest(OWNER.address, "iris", mlp_input(), verify=False)
        assert result.model_id == v2
        refused(client.get("/v1/models/latest", params={"owner": OWNER.address, "name": "nope"}), 404,
                "unknown_model")


def test_a_pending_listing_is_not_served_to_the_escrow_watcher(make_app: AppFactory, mlp_id: str) -> None:
    with TestClient(make_app()) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        (model_id,) = listings(client, mlp_id, 1)
        services.catalog.repo.review(model_id, "pending", None)
        assert model_id not in [r.id for r in services.catalog.repo.served()]
        assert client.get("/v1/models").json()["models"] == []


def test_an_owner_cannot_take_over_another_owners_listing_id(make_app: AppFactory, mlp_id: str) -> None:
    with TestClient(make_app()) as client:
        repo = client.app.state.services.catalog.repo  # type: ignore[attr-defined]
        (model_id,) = listings(client, mlp_id, 1)  # OWNER's
        with pytest.raises(ModelOwnedByOther):
            repo.upsert(model_id, name="x", price_atomic=1, owner=OTHER.address, claim=True)
        repo.upsert(model_id, name="renamed", price_atomic=5, owner=OWNER.address.lower(), claim=True)
        assert repo.get(model_id).name == "renamed"


def test_new_wallets_do_not_buy_more_of_the_nodes_compile_time(make_app: AppFactory) -> None:
    """Sybils: per-owner quotas are per wallet, so the node also bounds all owners' compiles together."""
    with TestClient(make_app(listing_policy="open", listing_max_compiling=1)) as client:
        form, files = signed_form(client, OWNER)
        assert client.post("/v1/models", data=form, files=files).status_code == 202
        form, files = signed_form(client, OTHER)  # a second wallet while the first compiles
        error = refused(client.post("/v1/models", data=form, files=files), 403, "owner_quota_exceeded")
        assert error["details"]["quota"] == "node_compiling"
    with TestClient(make_app(listing_policy="open", listing_compile_s_per_day=0)) as client:
        form, files = signed_form(client, OTHER)
        error = refused(client.post("/v1/models", data=form, files=files), 403, "owner_quota_exceeded")
        assert error["details"]["quota"] == "node_compile_seconds"


def test_uploads_the_check_refused_count_against_the_owner(make_app: AppFactory) -> None:
    """Each refused file cost the node a sandboxed parse: an owner past its refused uploads of the day is refused
    before anything more is parsed (a fresh wallet starts at zero; the node-wide budgets still bound those)."""
    with TestClient(make_app(listing_policy="open", owner_refused_per_day=2)) as client:
        for _ in range(2):
            form, _files = signed_form(client)
            bad = {"onnx": ("mlp.onnx", b"\x0a\xff\xff not a model", "application/octet-stream")}
            form, files = _resigned(client, form, bad)
            refused(client.post("/v1/models", data=form, files=files), 422, "invalid_model")
        form, files = signed_form(client)
        error = refused(client.post("/v1/models", data=form, files=files), 403, "owner_quota_exceeded")
        assert error["details"]["quota"] == "refused_uploads" and error["details"]["used"] == 2
        assert client.get("/v1/listing-policy").json()["refused_per_day"] == 2
        form, files = signed_form(client, OTHER)  # another owner is not refused for OWNER's files
        assert client.post("/v1/models", data=form, files=files).status_code == 202


def test_throwaway_wallets_refused_uploads_do_not_lock_honest_owners_out(make_app: AppFactory) -> None:
    """The fifth review: uploads being checked counted against the node's compile slots, so fresh wallets whose files
    the check refuses kept every other owner's upload at 403. A check holds no compile slot now; a refused upload
    costs its address (past two a day, a wait that doubles per refusal), never another address or owner."""
    from proofmarket.marketplace.submissions import REFUSED_FREE

    bad = {"onnx": ("mlp.onnx", b"\x0a\xff\xff not a model", "application/octet-stream")}
    with TestClient(make_app(listing_policy="open", listing_max_compiling=2)) as client:
        for n in range(REFUSED_FREE):  # two fresh wallets, each refused after the node's check
            wallet = Account.from_key(bytes([0x40 + n]) * 32)
            form, _ = signed_form(client, wallet)
            form, files = _resigned(client, form, bad, wallet)
            refused(client.post("/v1/models", data=form, files=files), 422, "invalid_model")
        honest = TestClient(client.app, client=("198.51.100.4", 5000))
        form, files = signed_form(honest, OWNER)  # an honest owner (its own address) lists at once
        assert honest.post("/v1/models", data=form, files=files).status_code == 202
        third = Account.from_key(b"\x4f" * 32)  # one more refused upload from that address ...
        form, _ = signed_form(client, third)
        form, files = _resigned(client, form, bad, third)
        refused(client.post("/v1/models", data=form, files=files), 422, "invalid_model")
        wallet = Account.from_key(b"\x50" * 32)  # ... and its next upload, from any wallet, waits
        form, files = signed_form(client, wallet)
        error = refused(client.post("/v1/models", data=form, files=files), 403, "owner_quota_exceeded")
        assert error["details"]["quota"] == "refused_wait" and error["details"]["retry_after_s"] > 0, error
    with TestClient(make_app(listing_policy="open"), client=("203.0.113.9", 5000)) as other:
        form, files = signed_form(other, OTHER)  # another address is not made to wait for it
        assert other.post("/v1/models", data=form, files=files).status_code == 202


def test_one_address_holds_at_most_half_the_compile_slots(make_app: AppFactory) -> None:
    """Two throwaway wallets behind one address whose models pass the check and compile slowly held both of a node's
    two compile slots; an address nobody vouched for now holds at most half of them (at least one)."""
    from proofmarket.marketplace.submissions import address_open

    assert [address_open(n) for n in (0, 1, 2, 3, 4, 8)] == [1, 1, 1, 1, 2, 2]
    with TestClient(make_app(listing_policy="open", listing_max_compiling=2)) as client:
        form, files = signed_form(client, Account.from_key(b"\x61" * 32))
        assert client.post("/v1/models", data=form, files=files).status_code == 202
        form, files = signed_form(client, Account.from_key(b"\x62" * 32))  # a second wallet, the same address
        error = refused(client.post("/v1/models", data=form, files=files), 403, "owner_quota_exceeded")
        assert error["details"]["quota"] == "address_busy" and error["details"]["limit"] == 1, error
        honest = TestClient(client.app, client=("203.0.113.10", 5000))  # another owner keeps the other slot
        form, files = signed_form(honest, OTHER)
        assert honest.post("/v1/models", data=form, files=files).status_code == 202


def _resigned(client: TestClient, form: dict[str, str], files: dict[str, Any], account: LocalAccount = OWNER
              ) -> tuple[dict[str, str], dict[str, Any]]:
    """``form`` re-signed over other ONNX bytes (the signature binds the file)."""
    onnx = files["onnx"][1]
    request = new_request(account.address, client.get("/v1/listing-policy").json()["node"], onnx, name=form["name"],
                          price_atomic=int(form["price_atomic"]), metadata=b"", supersedes="", valid_s=600)
    return {**form, "deadline": str(request.deadline), "nonce": request.nonce,
            "signature": request.sign(account)}, files


def test_fresh_wallets_share_only_the_open_part_of_the_compile_budget(make_app: AppFactory) -> None:
    """Twenty fresh wallets that spent the node's open compile seconds lock out the twenty-first, not the owners the
    operator vouched for (allowlisted, or approved in review): their share is reserved."""
    from datetime import timedelta

    from proofmarket.db import CallKind, CallRow, CallStatus
    from proofmarket.db.owner_tables import ListingSubmissionRow
    from proofmarket.db.tables import utcnow

    app = make_app(listing_policy="open", listing_compile_s_per_day=100.0, listing_open_share=0.5,
                   listing_owners=OWNER.address, listing_max_compiling=50)
    services = app.state.services
    started = utcnow() - timedelta(minutes=30)
    with services.db.session() as s:  # each sybil's compile ran 3 s: 60 s, past the open 50
        for i in range(20):
            sybil = Account.create().address.lower()
            s.add(CallRow(id=f"sybil-compile-{i}", kind=CallKind.COMPILE, status=CallStatus.FAILED, system="ezkl",
                          rail="free", input={}, request_hash=f"sybil-{i}", created_at=started, started_at=started,
                          finished_at=started + timedelta(seconds=3)))
            s.add(ListingSubmissionRow(nonce=f"0x{i:064x}", owner=sybil, job_id=f"sybil-compile-{i}",
                                       onnx_sha256="0" * 64, size_bytes=100, created_at=started))
    with TestClient(app) as client:
        assert client.get("/v1/listing-policy").json()["open_compile_s_per_day"] == 50.0
        form, files = signed_form(client, Account.create())
        error = refused(client.post("/v1/models", data=form, files=files), 403, "owner_quota_exceeded")
        assert error["details"]["quota"] == "open_compile_seconds" and error["details"]["limit"] == 50.0
        form, files = signed_form(client, OWNER)  # allowlisted: the reserved half is still there
        admitted = client.post("/v1/models", data=form, files=files)
        assert admitted.status_code == 202, admitted.text


def test_the_sdk_lists_a_model_from_files_as_the_tools_write_them(make_app: AppFactory, tmp_path: Path) -> None:
    """From Python, as a new owner has its model: torch's default export (the weights in model.onnx.data beside it)
    and samples as a .npy file (before: the SDK wanted the samples' JSON text and could not send the weights)."""
    import numpy as np
    import onnx
    from served import Served

    from proofmarket.sdk.catalogue import external_files
    from proofmarket.sdk.client import Client

    onnx.save_model(onnx.load(str(sample_path("mlp"))), str(tmp_path / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert external_files(tmp_path / "model.onnx") == [tmp_path / "model.onnx.data"]
    doc = json.loads(sample_path("mlp", "samples").read_text())["inputs"]
    samples = np.array([s["x"] for s in doc], dtype=np.float32)
    np.save(tmp_path / "samples.npy", samples.reshape(len(samples), 1, 8))
    app = make_app(listing_policy="open")
    with Served(app) as node, Client(node.url, account=OWNER, cache_dir=tmp_path / "cache") as sdk:
        job = sdk.list_model(tmp_path / "model.onnx", tmp_path / "samples.npy", price_atomic=25_000, name="torch",
                             task="regression")
        assert job["kind"] == "compile", job
        services = app.state.services
        spec = services.calls.repo.get(job["id"]).input
        assert spec["catalog"]["task"] == "regression"  # stated by the owner: compile checks values, not labels
        stored = onnx.load(str(services.workspace.store.path(spec["onnx_cid"])))
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in stored.graph.initializer)
