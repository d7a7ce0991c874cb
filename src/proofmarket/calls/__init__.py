"""Jobs: proving and compiling run as durable jobs (rows in the database) on a queue of workers."""

from proofmarket.calls.local import LocalJobQueue
from proofmarket.calls.metrics import JobMetrics
from proofmarket.calls.queue import JobQueue
from proofmarket.calls.runner import JobRunner
from proofmarket.calls.service import JobService, request_hash
from proofmarket.core.errors import IdempotencyConflict, JobInterrupted, UnknownJob
from proofmarket.payments.tickets import PaymentTicket, ProofOutcome, SettleHook, Settlement

__all__ = [
    "IdempotencyConflict",
    "JobInterrupted",
    "JobMetrics",
    "JobQueue",
    "JobRunner",
    "JobService",
    "LocalJobQueue",
    "PaymentTicket",
    "ProofOutcome",
    "SettleHook",
    "Settlement",
    "UnknownJob",
    "request_hash",
]
