"""A restart fails what was running (``interrupted``) and runs again what was only queued."""

from __future__ import annotations

from api_helpers import AppFactory, owner_headers, wait_job
from fastapi.testclient import TestClient

from proofmarket.api import FreeAccess
from proofmarket.calls import Ticket
from proofmarket.db import CallKind, NewCall
from proofmarket.store import cid_for_bytes

NOT_A_MODEL = cid_for_bytes(b"no such model")


def test_restart_marks_running_jobs_interrupted_and_requeues_queued_ones(make_app: AppFactory) -> None:
    # Given a node that stopped with one job running and one queued (rows written as the old node left them)
    old = make_app()
    repo = old.state.services.calls.repo
    running = repo.create(NewCall(CallKind.PROVE, {"inputs": {"input_data": [[0.0]]}}, "h1", model_id=NOT_A_MODEL))
    assert repo.start(running.id) is not None
    queued = repo.create(NewCall(CallKind.PROVE, {"inputs": {"input_data": [[0.0]]}}, "h2", model_id=NOT_A_MODEL))
    old.state.services.close()

    # When a new node starts on the same database
    new = make_app()
    assert new.state.services.queue.recovery.interrupted == [running.id]
    with TestClient(new) as client:
        # Then the running job failed as interrupted, and the queued one ran (and failed on its own merits)
        job = client.get(f"/v1/jobs/{running.id}", headers=owner_headers(client, running.id)).json()
        assert job["status"] == "failed" and job["error"]["code"] == "interrupted"
        assert job["result"] is None and job["finished_at"] is not None
        again = wait_job(client, queued.id)
        assert again["status"] == "failed" and again["error"]["code"] == "unknown_model"
        assert again["attempts"] == 1


def test_restart_releases_the_payment_of_an_interrupted_job(make_app: AppFactory) -> None:
    released: list[str] = []

    class Gate(FreeAccess):
        def release(self, ticket: Ticket) -> None:
            released.append(ticket.nonce)

    old = make_app()
    repo = old.state.services.calls.repo
    ticket = Ticket(nonce="0xabc", amount_atomic=1, payer="0xpayer")
    paid = repo.create(NewCall(CallKind.PROVE, {"inputs": {}}, "h", model_id=NOT_A_MODEL, payment_nonce=ticket.nonce,
                               payment=ticket.to_json()))
    repo.start(paid.id)
    old.state.services.close()

    make_app(gate=Gate())
    assert released == ["0xabc"]
