"""Webhooks: a call's callback and an owner's subscription are delivered once, signed by the node, and retried
after a failure; targets on the node's own network are refused unless allowed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from api_helpers import AppFactory, error_of, mlp_input
from eth_account import Account
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from served import Served
from standardwebhooks import Webhook

from proofmarket.core.address_signature import body_purpose, sign_headers
from proofmarket.core.errors import Unauthorized
from proofmarket.sdk.webhooks import verify_webhook

OWNER = Account.from_key("0x" + "c3" * 32)
STRANGER = Account.from_key("0x" + "d4" * 32)


class Receiver:
    """An HTTP endpoint that records what it is sent and fails the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            with self.lock:
                self.got.append((dict(request.headers), body))
                failing = len(self.got) <= self.fail_first
            return JSONResponse({"ok": not failing}, status_code=503 if failing else 200)

        self.served = Served(app)

    @property
    def url(self) -> str:
        return f"{self.served.url}/hook"

    def wait(self, count: int, timeout_s: float = 30.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout_s
        while len(self.got) < count:
            assert time.monotonic() < deadline, f"{len(self.got)} of {count} deliveries arrived"
            time.sleep(0.1)
        return list(self.got)


@pytest.fixture
def receiver() -> Any:
    r = Receiver(fail_first=1)
    with r.served:
        yield r


def node_of(client: TestClient) -> str:
    return str(client.get("/v1/listing-policy").json()["node"])


def subscribe(client: TestClient, account: Any, body: dict[str, Any]) -> Any:
    headers = sign_headers(account, node_of(client), body_purpose(body, "webhook"))
    return client.post("/v1/webhooks", json=body, headers=headers)


@pytest.mark.slow
def test_a_callback_and_an_owners_event_are_delivered_once_signed_and_retried(
        make_app: AppFactory, mlp_id: str, receiver: Receiver) -> None:
    app = make_app(webhook_private_targets="on")
    app.state.services.catalog.register(mlp_id, price_atomic=10_000, owner=OWNER.address)
    with TestClient(app) as client:
        node = node_of(client)
        sub = subscribe(client, OWNER, {"url": receiver.url, "events": ["call"], "model_id": mlp_id})
        assert sub.status_code == 201, sub.text
        doc = mlp_input()
        doc["input_data"][0][1] += 0.25  # not a cached answer of another test
        accepted = client.post(f"/v1/models/{mlp_id}/infer", params={"mode": "async", "callback_url": receiver.url},
                               json=doc)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]

        # two deliveries (the callback, the owner's event); the first POST fails and is retried
        got = receiver.wait(3)
        time.sleep(2.5)  # a delivered one is never sent again
        got = receiver.got
        assert len(got) == 3, [h.get("x-proofmarket-event") for h, _ in got]
        events = [verify_webhook(h, body, node) for h, body in got]
        ids = [e["id"] for e in events]
        assert len(set(ids)) == 2 and ids[0] in ids[1:]  # the failed one came again under its delivery id
        result = next(e for e in events if e["event"] == "call.result")
        assert result["job_id"] == job_id and result["status"] == "proved" and result["result"]["output"]
        owners = next(e for e in events if e["event"] == "call")
        assert owners["job_id"] == job_id and owners["model_id"] == mlp_id and "output" not in owners
        assert "result" not in owners and owners["status"] == "proved"
        # the subscription's deliveries are also Standard Webhooks: its secret (shown once) checks them
        secret = sub.json()["secret"]
        assert secret.startswith("whsec_") and "secret" not in client.get(
            "/v1/webhooks", headers=sign_headers(OWNER, node, "webhooks")).json()["webhooks"][0]
        (owner_headers, owner_body), = [(h, b) for h, b in got if h.get("x-proofmarket-event") == "call"]
        assert Webhook(secret).verify(owner_body, owner_headers)["id"] == owners["id"]
        assert verify_webhook(owner_headers, owner_body, node, secret=secret)["id"] == owners["id"]
        with pytest.raises(Unauthorized, match="Standard Webhooks"):
            verify_webhook(owner_headers, owner_body, node, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQQ==")
        assert not any("webhook-signature" in h for h, _ in got if h.get("x-proofmarket-event") == "call.result")

        # a forged or replayed delivery is refused by the SDK's check
        headers, body = got[-1]
        with pytest.raises(Unauthorized):
            verify_webhook(headers, body.replace(b"proved", b"failed"), node)
        with pytest.raises(Unauthorized):
            verify_webhook(headers, body, STRANGER.address)
        with pytest.raises(Unauthorized):
            verify_webhook(headers, body, node, now=time.time() + 3600)

        # the owner sees its subscription and its deliveries
        listed = client.get("/v1/webhooks", headers=sign_headers(OWNER, node, "webhooks")).json()
        assert [w["id"] for w in listed["webhooks"]] == [sub.json()["id"]]
        assert [d["status"] for d in listed["deliveries"]] == ["delivered"]


def test_targets_and_subscriptions_are_checked(make_app: AppFactory, mlp_id: str) -> None:
    app = make_app(webhook_private_targets="off")
    app.state.services.catalog.register(mlp_id, price_atomic=10_000, owner=OWNER.address)
    with TestClient(app) as client:
        for url in ("http://127.0.0.1:9/hook", "http://10.0.0.7/hook", "ftp://example.com/x", "http://user:pw@x.io/"):
            response = client.post(f"/v1/models/{mlp_id}/infer", params={"mode": "async", "callback_url": url},
                                   json=mlp_input())
            assert response.status_code == 422 and error_of(response)["code"] == "webhook_target_refused", url
        assert app.state.services.calls.repo.recent(5) == []  # refused before a call was made
        refused = subscribe(client, OWNER, {"url": "http://127.0.0.1:9/hook", "events": ["call"]})
        assert refused.status_code == 422
        stranger = subscribe(client, STRANGER, {"url": "https://example.com/hook", "events": ["payout"],
                                                "model_id": mlp_id})
        assert stranger.status_code == 403 and error_of(stranger)["code"] == "forbidden"
        unsigned = client.post("/v1/webhooks", json={"url": "https://example.com/hook", "events": ["call"]})
        assert unsigned.status_code == 401
        bad = subscribe(client, OWNER, {"url": "https://example.com/hook", "events": ["everything"]})
        assert bad.status_code == 400


def test_payouts_and_challenges_reach_the_owners_subscribers_once(make_app: AppFactory, mlp_id: str) -> None:
    from proofmarket.db import CallKind, CallRow, CallStatus
    from proofmarket.db.owner_tables import WebhookDeliveryRow
    from proofmarket.payments.tickets import Settlement

    app = make_app(webhook_private_targets="on")
    services = app.state.services
    services.catalog.register(mlp_id, price_atomic=10_000, owner=OWNER.address)
    hooks = services.webhooks
    hooks.subscribe(OWNER.address.lower(), "http://127.0.0.1:9/pay", ["payout", "challenge"], None)
    hooks.subscribe(OWNER.address.lower(), "http://127.0.0.1:9/calls", ["call"], mlp_id)
    job = CallRow(id="j1", kind=CallKind.PROVE, model_id=mlp_id, status=CallStatus.SETTLED, rail="x402", input={},
                  request_hash="x")
    settlement = Settlement(payment={"amount": "10000", "transaction": "0xabc", "scheme": "exact"})
    for _ in range(2):  # a hook called twice (two nodes, a retry) reports once
        hooks.captured(job, settlement, None)
        hooks.court_status(mlp_id, 7, "challenged")
        hooks.court_status(mlp_id, 7, "paid")  # not a challenge: no event
    with services.db.session() as s:
        rows = {(r.event, r.url): r.payload for r in s.query(WebhookDeliveryRow).all()}
    assert set(rows) == {("payout", "http://127.0.0.1:9/pay"), ("challenge", "http://127.0.0.1:9/pay")}
    assert rows[("payout", "http://127.0.0.1:9/pay")]["amount_atomic"] == "10000"
    assert rows[("challenge", "http://127.0.0.1:9/pay")]["request_id"] == 7


def test_a_rebinding_name_reaches_only_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is resolved once and the POST goes to the address checked: a DNS answer that turns private after the
    check (rebinding) reaches nothing private; IPv6 forms carrying a private IPv4 address are refused too."""
    import ipaddress
    import socket

    import httpx

    from proofmarket.marketplace import webhook_targets as targets
    from proofmarket.marketplace import webhooks
    from proofmarket.marketplace.webhook_targets import WebhookTargetRefused

    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

    def rebinding(host: str, port: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(targets.socket, "getaddrinfo", rebinding)
    target, host, extensions = targets.pinned("https://hooks.example.org:8443/in?x=1", False)
    assert (target, host, extensions) == ("https://93.184.216.34:8443/in?x=1", {"Host": "hooks.example.org:8443"},
                                          {"sni_hostname": "hooks.example.org"})
    with pytest.raises(WebhookTargetRefused, match="private"):
        targets.pinned("http://hooks.example.org/in", False)  # the name now answers 127.0.0.1
    for inner in ("::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:a00:1::", "64:ff9b::a9fe:a9fe", "fec0::1",
                  "64:ff9b:1::a00:1", "::7f00:1"):
        assert not targets.public(ipaddress.ip_address(inner)), inner
    assert targets.public(ipaddress.ip_address("2606:4700:4700::1111"))

    sent: list[tuple[str, dict[str, str]]] = []

    class Hooks:
        allow_private = False

        class settings:  # noqa: N801
            class owners:  # noqa: N801
                webhook_timeout_s = 1.0

        @staticmethod
        def secret_of(delivery: object) -> None:
            return None

    def post(url: str, **kwargs: object) -> httpx.Response:
        sent.append((url, dict(kwargs["headers"])))  # type: ignore[call-overload]
        return httpx.Response(204)

    answers = iter(["93.184.216.34", "10.0.0.1"])
    dispatcher = webhooks.Dispatcher(Hooks(), Account.create(), post=post)  # type: ignore[arg-type]

    class Delivery:
        id, event, url, payload = "d1", "call", "http://hooks.example.org/in", {"a": 1}

    assert dispatcher.send(Delivery()) is None  # type: ignore[arg-type]
    assert sent[0][0] == "http://93.184.216.34/in" and sent[0][1]["Host"] == "hooks.example.org"
    dispatcher.close()
