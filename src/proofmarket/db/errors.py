"""Database failures, as branches of the one error tree (``proofmarket.core.errors``).

    StoreError
    └── DatabaseError        database_error   500   the database cannot be opened, migrated or written
    UsageError
    └── DuplicateJob         duplicate_job    409   a unique job column (idempotency key, payment nonce) is taken
"""

from __future__ import annotations

from proofmarket.core.errors import StoreError, UsageError


class DatabaseError(StoreError):
    code = "database_error"


class DuplicateJob(UsageError):
    code, http_status = "duplicate_job", 409
