"""Creating jobs: Idempotency-Key returns the same job, a payment nonce pays for one job."""

from __future__ import annotations

import math

import pytest
from jobs_helpers import RecordingQueue

from proofmarket.db import Database, JobKind, JobRepo
from proofmarket.errors import PaymentReplayed
from proofmarket.jobs import IdempotencyConflict, JobService, PaymentTicket, UnknownJob, request_hash

INPUT = {"input_data": [[1.0, 2.0]]}


@pytest.fixture
def service(db: Database) -> JobService:
    return JobService(JobRepo(db), RecordingQueue())


def queue_of(service: JobService) -> RecordingQueue:
    assert isinstance(service.queue, RecordingQueue)
    return service.queue


def test_the_same_key_returns_the_same_job(service: JobService) -> None:
    first, created = service.submit_prove("m", INPUT, key="k1")
    again, created_again = service.submit_prove("m", INPUT, key="k1")
    assert created and not created_again and again.id == first.id
    assert queue_of(service).submitted == [(JobKind.PROVE, first.id)]


def test_the_same_key_for_another_request_is_refused(service: JobService) -> None:
    service.submit_prove("m", INPUT, key="k1")
    with pytest.raises(IdempotencyConflict):
        service.submit_prove("m", {"input_data": [[9.0, 9.0]]}, key="k1")
    with pytest.raises(IdempotencyConflict):
        service.submit_prove("other-model", INPUT, key="k1")


def test_a_payment_pays_for_one_job(service: JobService) -> None:
    ticket = PaymentTicket(nonce="0xnonce", amount_atomic=5, payer="0xpayer", doc={"sig": "0x"})
    job, _ = service.submit_prove("m", INPUT, ticket=ticket)
    assert job.payment_nonce == "0xnonce" and PaymentTicket.from_json(job.payment or {}) == ticket
    with pytest.raises(PaymentReplayed) as info:
        service.submit_prove("m", {"input_data": [[3.0, 4.0]]}, key="fresh", ticket=ticket)
    assert info.value.code == "payment_replayed"
    assert len(queue_of(service).submitted) == 1


def test_unknown_job(service: JobService) -> None:
    with pytest.raises(UnknownJob):
        service.get("nope")


def test_request_hash_ignores_key_order_and_takes_nan() -> None:
    a = request_hash(JobKind.PROVE, "m", {"inputs": {"x": [1.0], "y": [2.0]}})
    b = request_hash(JobKind.PROVE, "m", {"inputs": {"y": [2.0], "x": [1.0]}})
    assert a == b and a != request_hash(JobKind.PROVE, "m2", {"inputs": {"x": [1.0], "y": [2.0]}})
    assert len(request_hash(JobKind.PROVE, "m", {"input_data": [[math.nan]]})) == 64
