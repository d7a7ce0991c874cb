"""Jobs: proving and compiling run as durable jobs (rows in the database) on a queue of workers."""

from proofmarket.jobs.errors import IdempotencyConflict, JobInterrupted, UnknownJob
from proofmarket.jobs.local import LocalJobQueue
from proofmarket.jobs.metrics import JobMetrics
from proofmarket.jobs.queue import JobQueue
from proofmarket.jobs.runner import JobRunner
from proofmarket.jobs.service import JobService, request_hash
from proofmarket.jobs.types import PaymentTicket, ProofOutcome, SettleHook, Settlement

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
