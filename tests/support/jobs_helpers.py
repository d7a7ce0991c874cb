"""Helpers for the job tests: a database per test, fakes for the queue and the prover."""

from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from proofmarket.db import CallKind, CallRepo, CallRow, Database, NewCall
from proofmarket.payments.port import RailExtras
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.systems.ezkl.prover import ProveResult


def stop_processes(*procs: subprocess.Popen[bytes], wait_s: float = 30.0) -> None:
    """Stop worker processes: each is asked to stop (SIGTERM), then killed if it has not stopped within ``wait_s``."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()


def clear_env() -> None:
    for name in [n for n in os.environ if n.startswith("PROOFMARKET_")]:
        del os.environ[name]


def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'node.db'}")
    db.migrate()
    return db


def new_job(n: int = 0, *, key: str | None = None, nonce: str | None = None,
            payment: dict[str, Any] | None = None) -> NewCall:
    return NewCall(CallKind.PROVE, {"inputs": {"input_data": [[float(n)]]}}, f"hash-{n}", model_id="model",
                   idempotency_key=key, payment_nonce=nonce, payment=payment)


def ticket_json(nonce: str) -> dict[str, Any]:
    return Ticket(nonce=nonce, amount_atomic=10_000, payer="0xpayer").to_json()


class RecordingQueue:
    """A CallQueue that only records what it was given (for the service tests)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[CallKind, str]] = []
        self.rows: list[CallRow | None] = []  # the row each was submitted with

    def start(self) -> None: ...

    def submit(self, kind: CallKind, job_id: str, row: CallRow | None = None) -> None:
        self.submitted.append((kind, job_id))
        self.rows.append(row)

    def watch(self, job_id: str) -> Future[CallRow | None]:
        return Future()

    def depth(self) -> int:
        return len(self.submitted)

    def close(self) -> None: ...


class FailingProver:
    """A Prover whose proofs fail with ``exc`` (optionally after ``gate`` opens)."""

    def __init__(self, exc: Exception, gate: threading.Event | None = None) -> None:
        self.exc, self.gate, self.calls = exc, gate, 0

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def prove(self, model_id: str, inputs_doc: Any, timeout_s: float | None = None,
              salt: list[int] | None = None) -> ProveResult:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        raise self.exc

    def verify(self, bundle: Any) -> Any:
        raise NotImplementedError


class NeverSettle(RailExtras):
    """A settle hook for jobs that must not be settled; records the payments released."""

    name = "default"

    def __init__(self) -> None:
        self.calls = 0
        self.released: list[str] = []

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        self.calls += 1
        raise AssertionError("nothing may be settled here")

    def release(self, ticket: Ticket) -> None:
        self.released.append(ticket.nonce)


def repo(tmp_path: Path) -> CallRepo:
    return CallRepo(database(tmp_path))


class ProverWorker:
    """An engine worker whose EZKL system runs on ``prover`` (a test double or a real EzklProver)."""

    def __init__(self, prover: Any) -> None:
        from proofmarket.systems.ezkl.system import EzklSystem

        self.prover, self.system = prover, EzklSystem(prover)

    def get(self, system: str) -> Any:
        return self.system

    def warm(self) -> None:
        warm = getattr(self.prover, "warm", None)
        if callable(warm):
            warm()

    @property
    def ready(self) -> bool:
        return bool(getattr(self.prover, "ready", False))


def workers(*provers: Any) -> list[Any]:
    return [ProverWorker(p) for p in provers]


def local_queue(runner: Any, calls: CallRepo, worker_systems: list[Any]) -> Any:
    """The local engine as a node builds it: handing its proved calls to a settler of calls (stopped with it)."""
    from proofmarket.calls import LocalCallQueue
    from proofmarket.calls.settling import CallSettler

    settler = CallSettler(runner, calls, follow_s=runner.settings.payments.settle_poll_s)
    queue = LocalCallQueue(runner, calls, worker_systems, settler)
    close = queue.close

    def close_both() -> None:  # the engine, then the settler (the node's order)
        close()
        settler.close()

    queue.close = close_both  # type: ignore[method-assign]
    return queue
