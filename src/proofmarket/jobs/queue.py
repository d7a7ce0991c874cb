"""The job queue port. Jobs live in the database; a queue only decides who runs them and when.

``submit`` takes a job already stored as ``queued``; ``watch`` gives a future that resolves when a
worker is done with the job (read its outcome from the database). The local implementation is
:class:`proofmarket.jobs.local.LocalJobQueue`; a distributed engine would implement the same port.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from proofmarket.db import JobKind


class JobQueue(Protocol):
    def start(self) -> None: ...

    def submit(self, kind: JobKind, job_id: str) -> None: ...

    def watch(self, job_id: str) -> Future[None]: ...

    def depth(self) -> int:
        """Jobs waiting for a worker."""
        ...

    def close(self) -> None: ...
