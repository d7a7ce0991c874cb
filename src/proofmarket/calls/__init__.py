"""Calls: proving and compiling run as durable calls (rows in the database) on a queue of workers."""

from proofmarket.calls.local import LocalCallQueue
from proofmarket.calls.metrics import CallMetrics
from proofmarket.calls.queue import CallQueue
from proofmarket.calls.runner import CallRunner
from proofmarket.calls.service import CallService, request_hash
from proofmarket.core.errors import IdempotencyConflict, JobInterrupted, UnknownJob
from proofmarket.payments.tickets import ProofOutcome, SettleHook, Settlement, Ticket

__all__ = [
    "IdempotencyConflict",
    "JobInterrupted",
    "CallMetrics",
    "CallQueue",
    "CallRunner",
    "CallService",
    "LocalCallQueue",
    "Ticket",
    "ProofOutcome",
    "SettleHook",
    "Settlement",
    "UnknownJob",
    "request_hash",
]
