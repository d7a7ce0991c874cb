"""A proof system and a payment rail plugged in from the tests folder alone (issue 21's recipe): one paid call runs
through HTTP, the engine, the rail's capture, /v1/jobs and /v1/calls, metrics, and the SDK's verification dispatch."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import event, inspect
from toy_plugins import TOY, TOY_SPEC, ToyRail, compile_toy

from proofmarket.api import create_app
from proofmarket.api.signed import node_address
from proofmarket.core.address_signature import sign_headers
from proofmarket.core.errors import BundleError, VerificationFailed
from proofmarket.core.settings import Settings
from proofmarket.db.book import Accounts
from proofmarket.payments.payouts import Payouts
from proofmarket.sdk.client import Client
from proofmarket.systems import registry

ADMIN = "toy-admin-token-0123456789abcdef"
PRICE = 5
OWNER = Account.from_key(b"\x0a" * 32)  # the toy model's owner, paid through the node's book


@pytest.fixture
def toy_registered() -> Iterator[None]:
    registry.register(TOY_SPEC)
    try:
        yield
    finally:
        registry.unregister(TOY)


@pytest.fixture
def node(tmp_path: Path, toy_registered: None) -> Iterator[tuple[TestClient, ToyRail, str]]:
    settings = Settings(_env_file=None, home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'n.db'}",  # type: ignore[call-arg]
                        prover_workers=1, payments="off", admin_token=ADMIN)
    rail = ToyRail({"alice": 100, "bob": 3}, payee=OWNER.address, db_url=settings.db_url)
    app = create_app(settings, rails=[rail])
    services = app.state.services
    model_id = compile_toy(services.workspace.store, "summer")
    services.catalog.register(model_id, price_atomic=PRICE, name="summer", owner=OWNER.address)
    with TestClient(app) as client:
        yield client, rail, model_id
    services.close()


def sdk(client: TestClient, tmp_path: Path) -> Client:
    def send(request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        answer = client.request(request.method, str(request.url), headers=headers, content=request.read())
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return Client("http://testserver", cache_dir=tmp_path / "sdk", transport=httpx.MockTransport(send))


def test_a_paid_call_of_a_plugged_in_system_and_rail(node: tuple[TestClient, ToyRail, str], tmp_path: Path) -> None:
    client, rail, model_id = node
    url = f"/v1/models/{model_id}/infer"
    bad = client.post(url, json={"values": "not numbers"}, headers={"X-Toy-Credit": "alice"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"  # the system's check
    assert rail.settled == [] and rail.balances["alice"] == 100  # before any payment was looked at

    answer = client.post(url, json={"values": [1, 2, 3.5]}, headers={"X-Toy-Credit": "alice"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["output"] == [[6.5]] and body["mode"] == "toy" and body["system"] == TOY
    assert body["guarantee"] == TOY_SPEC.guarantee and body["status"] == "settled"
    assert body["payment"] == {"rail": "toy-credits", "payer": "alice", "amount": "15",
                               "bundle_cid": body["bundle_cid"]}  # priced by the system: 3 values x 5
    assert answer.headers["X-Toy-Charged"] == "15"  # the rail's headers, rebuilt at answer time
    assert rail.balances["alice"] == 85 and len(rail.settled) == 1
    # settled by the node's call settler, not by the engine's worker that ran it
    assert [t.split("_")[0] for t in rail.settled_on] == ["proofmarket-settle"]

    poor = client.post(url, json={"values": [1]}, headers={"X-Toy-Credit": "bob"})
    assert poor.status_code == 402 and poor.json()["error"]["code"] == "payment_insufficient_funds"

    listed = client.get("/v1/jobs", params={"system": TOY}, headers={"Authorization": f"Bearer {ADMIN}"}).json()
    [call] = listed["items"]
    assert (call["id"], call["system"], call["rail"], call["status"]) == (body["job_id"], TOY, "toy-credits",
                                                                           "settled")
    assert call["result"]["output"] == [[6.5]]
    same = client.get("/v1/calls", params={"rail": "toy-credits"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert [c["id"] for c in same.json()["items"]] == [body["job_id"]]
    assert client.get("/v1/jobs").status_code == 401  # every call: the admin's view only

    metrics = client.get("/metrics").text
    assert f'proofmarket_calls_total{{model="{model_id}",rail="toy-credits",status="settled",system="{TOY}"}} 1.0' \
        in metrics

    with sdk(client, tmp_path) as c:  # the SDK's verification dispatch finds the toy system in the registry
        report = c.verify(body["bundle"])
        assert report.valid and report.mode == "toy" and report.output == [[6.5]]
        forged = copy.deepcopy(body["bundle"])
        forged["output"]["values"] = [[7.0]]
        with pytest.raises(VerificationFailed):
            c.verify(forged)


def test_an_unregistered_system_is_refused_not_read_as_another(tmp_path: Path) -> None:
    doc: dict[str, Any] = {"format": "proofmarket/proof-bundle", "version": 1, "system": "nobody-v0",
                           "model": {"id": "x"}, "input": {}, "output": {}}
    with pytest.raises(BundleError, match="unknown proof system"):
        registry.parse_bundle(doc)


def test_a_plugged_in_rail_posts_to_the_book_and_its_payee_is_owed(node: tuple[TestClient, ToyRail, str]) -> None:
    """The toy rail says which transfer its capture makes; the runner posts it with the call's state change; the
    model's owner is owed it in the book, reads it at /v1/earnings and is in the one payout path's list."""
    client, rail, model_id = node
    url = f"/v1/models/{model_id}/infer"
    for _ in range(2):
        assert client.post(url, json={"values": [1, 2]}, headers={"X-Toy-Credit": "alice"}).status_code == 200
    book = client.app.state.services.money.book  # type: ignore[attr-defined]
    assert book.balance(Accounts.payee(OWNER.address)).posted == 2 * 2 * PRICE
    assert book.balance(Accounts.wallet("alice")).posted == -2 * 2 * PRICE
    assert book.check() == []  # conservation: balanced, no account below zero
    node_signer = node_address(client.app.state.services)  # type: ignore[attr-defined]
    earnings = client.get("/v1/earnings", params={"address": OWNER.address},
                          headers=sign_headers(OWNER, node_signer, "earnings"))
    assert earnings.status_code == 200, earnings.text
    assert earnings.json()["book"]["owed"] == str(2 * 2 * PRICE)
    assert earnings.json()["book"]["models"][model_id]["owed"] == str(2 * 2 * PRICE)
    assert earnings.json()["book"]["by_rail"] == {"toy-credits": str(2 * 2 * PRICE)}  # revenue by rail and day
    assert sum(int(d["revenue"]) for d in earnings.json()["book"]["by_day"]) == 2 * 2 * PRICE
    payouts = Payouts(book, None, "", Account.from_key(b"\x0b" * 32))  # type: ignore[arg-type]
    assert payouts.owed() == {OWNER.address.lower(): {model_id: 2 * 2 * PRICE}}


def test_a_plugged_in_rail_brings_its_routes_and_table(node: tuple[TestClient, ToyRail, str]) -> None:
    """The toy rail (from the tests folder) brings a route and a table through the port: the node created the table
    no migration holds, mounted the routes, and they reach the node (its admin check) through the rail host."""
    client, rail, model_id = node
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.engine.connect() as conn:
        assert "toy_topups" in inspect(conn).get_table_names()
    refused = client.post("/v1/toy/topups", json={"account": "bob", "amount": 7})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/toy/topups", json={"account": "bob", "amount": 7},
                       headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    done = client.post("/v1/toy/topups", json={"account": "bob", "amount": 7},
                       headers={"Authorization": f"Bearer {ADMIN}"})
    assert done.status_code == 200, done.text
    assert done.json()["balance"] == 10
    assert client.get("/v1/toy/accounts/bob").json() == {"account": "bob", "balance": 10, "topups": [7]}
    # the top-up pays: bob's 10 cover a call of 2 x PRICE
    paid = client.post(f"/v1/models/{model_id}/infer", json={"values": [1, 2]}, headers={"X-Toy-Credit": "bob"})
    assert paid.status_code == 200, paid.text
    schema = client.get("/openapi.json").json()
    assert schema["paths"]["/v1/toy/topups"]["post"]["security"] == [{"AdminToken": []}]


def test_a_paid_call_reads_back_nothing_it_carries(node: tuple[TestClient, ToyRail, str]) -> None:
    """The node's own work per call (issue 57): the engine starts a call from the row it was queued with, the settler
    from the row the proof step wrote, the waiting request answers from the row the settler delivered; the owner's
    webhook subscriptions are read once for the call's two events (call, payout)."""
    client, _, model_id = node
    url = f"/v1/models/{model_id}/infer"
    services = client.app.state.services  # type: ignore[attr-defined]
    hooks_done = threading.Event()  # the last after-capture hook: the call's webhooks ran before it
    services.queue.runner.after_capture.append(lambda *_: hooks_done.set())
    assert client.post(url, json={"values": [1]}, headers={"X-Toy-Credit": "alice"}).status_code == 200  # warm
    assert hooks_done.wait(10)
    hooks_done.clear()
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        answer = client.post(url, json={"values": [1, 2]}, headers={"X-Toy-Credit": "alice"})
        assert hooks_done.wait(10)
    finally:
        event.remove(services.db.engine, "before_cursor_execute", record)
    assert answer.status_code == 200 and answer.json()["status"] == "settled", answer.text
    job_reads = [s for s in seen if s.startswith("SELECT jobs.id, jobs.kind") and "WHERE jobs.id =" in s]
    assert job_reads == [], job_reads
    subscription_reads = [s for s in seen if s.startswith("SELECT") and "FROM webhook_subscriptions" in s]
    assert len(subscription_reads) == 1, subscription_reads
