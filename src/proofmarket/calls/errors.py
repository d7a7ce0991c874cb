"""Job failures, as branches of the one error tree (``proofmarket.core.errors``).

    UsageError
    ├── UnknownJob               unknown_job            404
    └── IdempotencyConflict      idempotency_conflict   409   the key was used for a different request
    ProvingError
    └── JobInterrupted           interrupted            503   the node stopped while the job ran

A payment nonce already used by another job raises ``proofmarket.core.errors.PaymentReplayed``.
"""

from __future__ import annotations

from proofmarket.core.errors import ProofMarketError, ProvingError, UsageError


class UnknownJob(UsageError):
    code, http_status = "unknown_job", 404


class IdempotencyConflict(UsageError):
    code, http_status = "idempotency_conflict", 409


class JobInterrupted(ProvingError):
    code, http_status = "interrupted", 503


def error_class(code: str) -> type[ProofMarketError]:
    """The error class with this stable code (searched in every imported branch of the tree)."""
    stack: list[type[ProofMarketError]] = [ProofMarketError]
    while stack:
        cls = stack.pop()
        if cls.code == code:
            return cls
        stack.extend(cls.__subclasses__())
    return ProofMarketError


def rebuild_error(code: str, message: str, **details: object) -> ProofMarketError:
    """An error from its stored code and message (a failed job), keeping the code even if no class has it."""
    exc = error_class(code)(message, **details)
    exc.code = code
    return exc
