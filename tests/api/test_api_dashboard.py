"""The read-only HTML dashboard: node status, models, recent jobs, job counts, escrow requests."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from api_helpers import AppFactory
from fastapi.testclient import TestClient

from proofmarket import __version__
from proofmarket.api import Offer
from proofmarket.calls import ProofOutcome, Settlement, Ticket
from proofmarket.db import CallKind, CallRepo, EscrowRepo, NewCall, SeenRequest
from proofmarket.payments.port import RailExtras

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def page(client: TestClient) -> str:
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def repo_of(client: TestClient) -> CallRepo:
    repo: CallRepo = client.app.state.services.calls.repo  # type: ignore[attr-defined]
    return repo


def job(repo: CallRepo, n: int, model_id: str = "model") -> str:
    return repo.create(NewCall(CallKind.PROVE, {"inputs": {"x": [[float(n)]]}}, f"hash-{n}", model_id=model_id)).id


def test_empty_node_renders_with_payments_off(client: TestClient) -> None:
    text = page(client)
    assert f"proofmarket node {__version__}" in text
    assert "no models served yet" in text and "no jobs yet" in text
    assert "escrow watcher off" in text
    assert "x402 off" in text
    assert '<meta http-equiv="refresh" content="10">' in text
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text  # nothing fetched


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/dashboard"


def test_dashboard_is_a_meta_operation(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/dashboard"]["get"]
    assert op["operationId"] == "dashboard" and op["tags"] == ["meta"]
    assert "text/html" in op["responses"]["200"]["content"]


def test_jobs_show_status_and_error_code_but_no_id_bundle_or_message(client: TestClient) -> None:
    # Given a queued, a proved (with a bundle) and a failed job (its message names a temp path)
    repo = repo_of(client)
    queued = job(repo, 1)
    proved = job(repo, 2)
    assert repo.start(proved) is not None
    assert repo.proved(proved, bundle_cid="bafyproofcid", result={"output": [[7.5]]}, final=True)
    failed = job(repo, 3, model_id=HOSTILE)
    assert repo.failed(failed, "proof_timeout", "<b>took too long</b> in /tmp/prove-x/witness.json")

    text = page(client)

    # Then statuses, codes and times show; job ids, bundle CIDs, proof links, outputs and messages do not
    assert '<span class="idle">queued</span>' in text
    assert '<span class="ok">proved</span>' in text
    assert '<span class="bad">failed</span>' in text
    assert "proof_timeout" in text and " s</td>" in text and "no jobs yet" not in text
    for secret in (queued, proved, failed, queued[:12], "bafyproofcid", "/v1/proofs", "/v1/jobs", "7.5",
                   "took too long", "/tmp/"):
        assert secret not in text, secret
    assert "<b>" not in text and HOSTILE not in text and ESCAPED in text


def test_recent_jobs_are_bounded_to_the_newest_twenty(client: TestClient) -> None:
    repo = repo_of(client)
    for n in range(25):
        job(repo, n)
    text = page(client)
    recent = text.split("Jobs by status")[0]
    assert recent.count('<span class="idle">queued</span>') == 20
    assert '<span class="idle">queued</span></td><td>25</td>' in text  # the counts see all of them


class FakeGate(RailExtras):
    name = "default"

    def describe(self) -> dict[str, Any]:
        return {"x402": True, "scheme": "exact", "network": "eip155:84532", "chain": {"chain_id": 84532}}

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        raise NotImplementedError

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        raise NotImplementedError

    def release(self, ticket: Ticket) -> None:
        raise NotImplementedError


def test_payments_on_show_the_network_and_chain(make_app: AppFactory) -> None:
    with TestClient(make_app(gate=FakeGate())) as client:
        text = page(client)
    assert "x402 on: network eip155:84532, chain id 84532" in text


def test_escrow_requests_show_when_the_watcher_runs(client: TestClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    market = "0x" + "ab" * 20
    repo = EscrowRepo(services.db)
    for request_id in (1, 2):
        repo.seen(SeenRequest(chain_id=31337, market=market, request_id=request_id, model_id=HOSTILE,
                              commitment="0x" + "00" * 32, consumer="0x" + "cd" * 20, amount=1_500_000,
                              deadline=2**40))
    row = repo.get(31337, market, 2)
    assert row is not None and repo.fulfilled(row.id, fulfil_tx="0x" + "ef" * 32, settlement={})
    client.app.state.escrow = SimpleNamespace(repo=repo, chain_id=31337, address=market)  # type: ignore[attr-defined]
    text = page(client)
    assert "escrow watcher off" not in text
    assert '<span class="idle">seen</span>' in text and '<span class="ok">fulfilled</span>' in text
    assert "<td>1.5</td>" in text and f'title="0x{"ef" * 32}"' in text
    assert HOSTILE not in text and ESCAPED in text


@pytest.mark.slow
def test_a_served_model_with_a_hostile_name_is_escaped(make_app: AppFactory, mlp_id: str) -> None:
    app = make_app()
    app.state.services.catalog.register(mlp_id, price_atomic=10_000, name=HOSTILE)
    with TestClient(app) as client:
        text = page(client)
    assert ESCAPED in text and HOSTILE not in text and "<script" not in text.lower()
    assert f'<a href="/v1/models/{mlp_id}">details</a>' in text and f'title="{mlp_id}"' in text
    assert "<td>0.01</td>" in text and "dev SRS (devnet only)" in text and "<td>public</td>" in text
    assert "no models served yet" not in text


def test_a_listing_whose_manifest_is_missing_is_named_not_fatal(client: TestClient) -> None:
    models = client.app.state.services.catalog.repo  # type: ignore[attr-defined]
    models.upsert("bafkreigone", name=HOSTILE, price_atomic=1)

    text = page(client)

    assert "model bafkreigone:" in text and "no models served yet" in text
    assert HOSTILE not in text
