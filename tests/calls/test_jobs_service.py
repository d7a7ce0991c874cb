"""Creating jobs: Idempotency-Key returns the same job, a payment nonce pays for one job."""

from __future__ import annotations

import math

import pytest
from jobs_helpers import RecordingQueue

from proofmarket.calls import CallService, IdempotencyConflict, Ticket, UnknownJob, request_hash
from proofmarket.calls.service import scoped_key
from proofmarket.core.errors import PaymentInsufficientFunds, PaymentReplayed
from proofmarket.db import CallKind, CallRepo, Database

INPUT = {"input_data": [[1.0, 2.0]]}


@pytest.fixture
def service(db: Database) -> CallService:
    return CallService(CallRepo(db), RecordingQueue())


def queue_of(service: CallService) -> RecordingQueue:
    assert isinstance(service.queue, RecordingQueue)
    return service.queue


def test_the_same_key_returns_the_same_job(service: CallService) -> None:
    first, created = service.submit_prove("m", INPUT, key="k1")
    again, created_again = service.submit_prove("m", INPUT, key="k1")
    assert created and not created_again and again.id == first.id
    assert queue_of(service).submitted == [(CallKind.PROVE, first.id)]


def test_the_same_key_for_another_request_is_refused(service: CallService) -> None:
    service.submit_prove("m", INPUT, key="k1")
    with pytest.raises(IdempotencyConflict):
        service.submit_prove("m", {"input_data": [[9.0, 9.0]]}, key="k1")
    with pytest.raises(IdempotencyConflict):
        service.submit_prove("other-model", INPUT, key="k1")


def test_a_payment_pays_for_one_job(service: CallService) -> None:
    ticket = Ticket(nonce="0xnonce", amount_atomic=5, payer="0xpayer", doc={"sig": "0x"})
    job, _ = service.submit_prove("m", INPUT, ticket=ticket)
    assert job.payment_nonce == "0xnonce" and Ticket.from_json(job.payment or {}) == ticket
    with pytest.raises(PaymentReplayed) as info:
        service.submit_prove("m", {"input_data": [[3.0, 4.0]]}, key="fresh", ticket=ticket)
    assert info.value.code == "payment_replayed"
    assert len(queue_of(service).submitted) == 1


def test_unknown_job(service: CallService) -> None:
    with pytest.raises(UnknownJob):
        service.get("nope")


def test_request_hash_ignores_key_order_and_takes_nan() -> None:
    a = request_hash(CallKind.PROVE, "m", {"inputs": {"x": [1.0], "y": [2.0]}})
    b = request_hash(CallKind.PROVE, "m", {"inputs": {"y": [2.0], "x": [1.0]}})
    assert a == b and a != request_hash(CallKind.PROVE, "m2", {"inputs": {"x": [1.0], "y": [2.0]}})
    assert len(request_hash(CallKind.PROVE, "m", {"input_data": [[math.nan]]})) == 64


# --- issue 8: keys scoped by payer, balances held across a payer's jobs ----------------------------------
def test_an_idempotency_key_is_found_only_by_its_payer(service: CallService) -> None:
    alice = Ticket(nonce="0xa1", amount_atomic=5, payer="0xAAAA")
    job, _ = service.submit_prove("m", INPUT, key="k", ticket=alice)
    found = service.existing("k", job.request_hash, "0xaaaa")  # the payer, whatever the case
    assert found is not None and found.id == job.id
    assert service.existing("k", job.request_hash) is None  # no payment
    assert service.existing("k", job.request_hash, "0xbbbb") is None  # another payer
    other, created = service.submit_prove("m", INPUT, key="k", ticket=Ticket("0xb1", 5, "0xBBBB"))
    assert created and other.id != job.id


def test_a_scoped_key_fits_the_column() -> None:
    long_key = "k" * 255
    scoped = scoped_key(long_key, "0x" + "ab" * 20)
    assert scoped is not None and len(scoped) <= 255 and scoped == scoped_key(long_key, "0x" + "AB" * 20)
    assert scoped_key("k", None) == "k" and scoped_key(None, "0xab") is None


def test_cover_is_asked_with_what_the_payer_s_other_unsettled_jobs_hold(service: CallService) -> None:
    asked: list[tuple[str, int]] = []

    def cover(ticket: Ticket, held: int) -> None:
        asked.append((ticket.nonce, held))
        if held + ticket.amount_atomic > 12:
            raise PaymentInsufficientFunds("no", held=held)

    service.submit_prove("m", INPUT, ticket=Ticket("0x1", 5, "0xP"), cover=cover)
    service.submit_prove("m", {"input_data": [[2.0]]}, ticket=Ticket("0x2", 5, "0xp"), cover=cover)
    service.submit_prove("m", {"input_data": [[3.0]]}, ticket=Ticket("0x3", 5, "0xQ"), cover=cover)
    with pytest.raises(PaymentInsufficientFunds):
        service.submit_prove("m", {"input_data": [[4.0]]}, ticket=Ticket("0x4", 5, "0xP"), cover=cover)
    assert asked == [("0x1", 0), ("0x2", 5), ("0x3", 0), ("0x4", 10)]
    assert len(queue_of(service).submitted) == 3  # the refused payment never became a job
