"""What the escrow and court watchers share: follow one contract's events from a saved cursor, in a daemon thread,
under a lease (one node of a database follows a contract at a time), and retry a failed request a few times.

A watcher subclass says which contract it follows and turns its events and rows into work:

- ``kind``, ``noun``, ``contract``, ``closing_events``: names, and the events that close a request on chain;
- ``_open_onchain(request_id)``: the on-chain request when it exists and is for this node (else None);
- ``_record_closed(row, onchain)``: record a request that can no longer be answered here (None while open);
- ``recover()`` (in ``start_up()``, once before the first poll), ``work()`` (each poll) and ``_on_event(event)``
  for its other events;
- ``_open_again(onchain)`` and ``_settled_by_us(onchain)``: how a request whose answer is ``confirming`` reads.

Reorgs and confirmations (``confirmations``: the settings', else the chain profile's): events are read that many
blocks deep, and when blocks the watcher read leave the chain (``EventWatcher``'s rollback from block F), each
request not closed that was seen at block F or later is read again: the same request on chain (commitment,
consumer, model) is kept; a request gone, or another one under its id, is forgotten (its canonical event records it
afresh). With confirmations, a mined answer is ``confirming`` until its transaction is that deep (``work()`` follows
those rows each pass: deep enough and ours on chain -> ``fulfilled``; the request open again, our answer orphaned ->
``input_received``, answered again; closed otherwise -> recorded as closed). Without (a devnet), straight to
``fulfilled``.

The app's lifespan (``api/app.py``, the composition root) builds each watcher once (``NodeServices.build_escrow``,
``build_court``) and runs it with the node's other background services (``node/supervisor.py``), after the engine;
the routers of ``/v1/requests`` and ``/v1/court`` read it from the app.

Rows live in the escrow table, one per (chain, contract, request id); every status change is a conditional update
and events are delivered at least once, so recording one is idempotent.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from prometheus_client import CollectorRegistry

from proofmarket.chain import ChainEvent, EventWatcher, model_id_for
from proofmarket.chain.contracts import BoundContract
from proofmarket.core.background import Pulse, ServiceHealth
from proofmarket.core.errors import (
    ChainError,
    InputMismatch,
    ProofMarketError,
    ProofTimeout,
    RequestClosed,
    UnknownRequest,
    from_code,
)
from proofmarket.core.profiles import profile_for
from proofmarket.core.settings import Settings
from proofmarket.db import (
    CallRow,
    CallStatus,
    Database,
    EscrowRepo,
    EscrowRequestRow,
    EscrowStatus,
    LeaseRepo,
    ModelRepo,
    SeenRequest,
)
from proofmarket.intake.reorgs import CLOSED, Reorgs, Req
from proofmarket.onchain import Market
from proofmarket.payments.port import Rail
from proofmarket.systems.workspace import Workspace

MAX_ATTEMPTS = 3  # transient failures (RPC, a stopped prover) before a request is failed for good
T = TypeVar("T")

if TYPE_CHECKING:
    from proofmarket.calls.service import CallService


class ChainWatcher(Reorgs[Req]):
    kind: ClassVar[str]  # "escrow", "court": the cursor's, the thread's and the logger's name
    noun: ClassVar[str]  # how its messages name a request
    contract: ClassVar[str]  # the deployment's contract it follows
    closing_events: ClassVar[tuple[str, ...]]  # events after which a request that took no input is read again
    unavailable: ClassVar[tuple[type[ProofMarketError], ...]] = ()  # construction errors that leave it off
    proof_timeout_s: float | None = None  # how long a request's call may run (the queue's proof timeout)
    follow_soon: Callable[[], None] | None = None  # the node's settler follows its settling calls now (a challenge)

    def __init__(self, market: Market, repo: EscrowRepo, served: Callable[[], Iterable[str]], bound: BoundContract,
                 *, confirmations: int | None = None, poll_s: float = 2.0, batch_size: int = 2_000,
                 owner: str | None = None, calls: CallService | None = None) -> None:
        self.market = market
        self.calls = calls  # the node's CallService: each answer is a call (rail escrow/court) in /v1/calls
        self.repo = repo
        self.served = served
        # the registry listings served: model ids are namespaced by owner, so a squatter's listing of the
        # same CID (another verifier, another price) has another id and is never answered here
        self.owner = owner or market.accounts.owner.address
        self.chain_id = market.client.chain_id
        self.confirmations = profile_for(self.chain_id).confirmations if confirmations is None else confirmations
        self.address = bound.address
        self.cursor_name = f"{self.kind}:{self.chain_id}:{self.address.lower()}"
        start, start_hash = repo.cursor_at(self.cursor_name)
        if start is None:
            start = market.deployment.contracts[self.contract].block
        self.log = logging.getLogger(f"proofmarket.{self.kind}")
        self.events = EventWatcher(market.client, {self.kind: bound}, from_block=start,
                                   confirmations=self.confirmations, batch_size=batch_size, poll_interval=poll_s,
                                   on_rollback=self._rolled_back)
        if start_hash is not None and start > 0:  # a reorg while the node was stopped is seen at the first scan
            self.events.remember(start - 1, start_hash)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._work_lock = threading.Lock()
        self.pulse = Pulse()
        self.lease: LeaseRepo | None = None  # several nodes on one database: one follows the contract at a time
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    @classmethod
    def for_node(cls, settings: Settings, db: Database, workspace: Workspace,
                 registry: CollectorRegistry | None = None,
                 market: Market | None = None, **options: Any) -> Self | None:
        """The node's watcher (``PROOFMARKET_ESCROW_WATCHER``): None when off, or when auto and nothing is deployed;
        its ``unavailable`` errors (e.g. no court in the deployment) leave it off whatever the setting. ``market``:
        the node's one market connection (opened here when the node has none). Every watcher delivers results into
        consumer contracts within ``PROOFMARKET_CALLBACK_MAX_GAS`` and for a tip of
        ``PROOFMARKET_CALLBACK_TIP_PER_MGAS`` (its constructor's ``callbacks``)."""
        if settings.chain.escrow_watcher == "off":
            return None
        market = market or Market.open_for(settings.chain.escrow_watcher, workspace, f"{cls.kind} watcher")
        if market is None:
            return None
        model_repo = ModelRepo(db)
        from proofmarket.intake.callback_terms import CallbackRule

        options.setdefault("callbacks", CallbackRule.of(settings))
        try:
            watcher = cls(market, EscrowRepo(db), lambda: [row.id for row in model_repo.served()],
                          confirmations=settings.chain.escrow_confirmations, poll_s=settings.chain.escrow_poll_s,
                          owner=settings.chain.model_owner, **options)
        except cls.unavailable as exc:
            watcher_log = logging.getLogger(f"proofmarket.{cls.kind}")
            watcher_log.info("%s watcher off: %s", cls.kind, exc.message)
            return None
        watcher.with_metrics(registry)
        watcher.lease = LeaseRepo(db)
        return watcher

    def with_metrics(self, registry: CollectorRegistry | None) -> Self:
        """Report on the node's Prometheus ``registry`` (after construction: a watcher that failed to build
        registers nothing)."""
        return self

    # --- consumers ----------------------------------------------------------------------------
    def get(self, request_id: int) -> EscrowRequestRow:
        """The node's row for a request; a request the watcher has not reached yet is read from the chain."""
        row = self.repo.get(self.chain_id, self.address, request_id)
        if row is not None:
            return row
        onchain = self._open_onchain(request_id) if request_id >= 1 else None
        served = self._served_keys()
        if onchain is None or onchain.model_key not in served:
            raise UnknownRequest(f"no {self.noun} {request_id} for a model this node serves", request_id=request_id)
        return self.repo.seen(self._seen(onchain, served[onchain.model_key]))

    def _take_input(self, row: EscrowRequestRow, opened: str, inputs: dict[str, Any]) -> EscrowRequestRow:
        """Store the input of ``row`` when it opens the on-chain commitment (``opened``: the commitment it makes)
        and the request is still open on chain; the watcher then answers it."""
        if opened.lower() != row.commitment.lower():
            raise InputMismatch(f"the input does not open {self.noun} {row.request_id}'s on-chain commitment",
                                request_id=row.request_id, commitment=row.commitment, posted=opened)
        if row.status == EscrowStatus.SEEN:
            closed = self._closed_now(row)
            if closed is not None:
                raise RequestClosed(f"{self.noun} {row.request_id} is closed on chain ({closed})",
                                    request_id=row.request_id)
            self.repo.input_received(row.id, inputs)
            self._wake.set()
        found = self.repo.get(self.chain_id, self.address, row.request_id)
        assert found is not None
        return found

    def _refuse_closed(self, row: EscrowRequestRow) -> None:
        if row.status in CLOSED:
            raise RequestClosed(f"{self.noun} {row.request_id} is {row.status}: it takes no input",
                                request_id=row.request_id, status=row.status)

    # --- the watcher --------------------------------------------------------------------------
    def scan(self) -> int:
        """Record the confirmed events of one batch of blocks; save the cursor. Returns the events handled."""
        batch = self.events.poll()
        served = self._served_keys()
        for event in batch:
            if event.event == "RequestCreated":
                self._created(event, served)
            elif event.event in self.closing_events:
                row = self.repo.get(self.chain_id, self.address, int(event.args["requestId"]))
                if row is not None and row.status in (EscrowStatus.SEEN, EscrowStatus.INPUT_RECEIVED):
                    self._record_closed(row, self._read(row.request_id))
            else:
                self._on_event(event)
            self._book(event)
        self.repo.save_cursor(self.cursor_name, self.events.next_block,
                              self.events.hash_at(self.events.next_block - 1))
        return len(batch)

    def run_once(self) -> None:
        while self.scan():
            pass
        self.work()

    def start(self) -> None:
        """Run the watcher in a daemon thread: start up (recover what a previous run left), then poll until
        ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"{self.kind}-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """``stop``: the ``Background`` name for it (the node's supervisor stops its services by ``close``)."""
        self.stop()

    @property
    def name(self) -> str:
        return f"{self.kind}-watcher"

    def health(self) -> ServiceHealth:
        return self.pulse.health(self.name, self._thread)

    def wake(self) -> None:
        self._wake.set()

    def start_up(self) -> None:
        """Once, before the first poll (and again until it succeeds): settle what a previous run left."""
        self.recover()

    def _leader(self) -> bool:
        """Whether this node holds (or just took) the lease on following this contract."""
        if self.lease is None:
            return True
        try:
            return self.lease.acquire(self.cursor_name, self.holder, max(15.0, 5 * self.poll_s))
        except Exception:
            self.log.warning("could not renew the watcher lease", exc_info=True)
            return False

    def _loop(self) -> None:
        started = False
        while not self._stop.is_set():
            if self._leader():  # else another node of this database follows the contract: stand by
                try:  # the chain may not answer yet: start up (then poll) as soon as it does
                    if not started:
                        self.start_up()
                        started = True
                    self.run_once()
                    self.pulse.passed()
                except Exception as exc:  # a bad poll must not kill the watcher: log and try again
                    self.log.exception("%s watcher: poll failed", self.kind)
                    self.pulse.failed(exc)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # --- attempts -----------------------------------------------------------------------------
    def _attempt(self, row: EscrowRequestRow, step: Callable[[], T]) -> T | None:
        """Run one attempt at a claimed ``row``: a failure releases it for another try (a chain error, anything
        unexpected) or fails it for good (any other error, or the last attempt). None when it failed."""
        try:
            return step()
        except ProofMarketError as exc:
            self._failed_attempt(row, exc.code, exc.message, transient=self._transient(exc))
        except Exception as exc:
            self.log.exception("%s %s: unexpected error", self.noun, row.request_id)
            self._failed_attempt(row, "internal_error", str(exc), transient=True)
        return None

    @staticmethod
    def _transient(exc: ProofMarketError) -> bool:
        """Worth another try: the chain did not answer, or refused what it may take later."""
        return isinstance(exc, ChainError)

    def _failed_attempt(self, row: EscrowRequestRow, code: str, message: str, *, transient: bool) -> None:
        fresh = self.repo.get(self.chain_id, self.address, row.request_id) or row  # attempts counted at claim
        if self._stop.is_set() or (transient and fresh.attempts < MAX_ATTEMPTS):
            self.repo.release(row.id)  # stopping, or worth another try: answered again later
            self.log.warning("%s %s: %s (%s), will retry", self.noun, row.request_id, message, code)
            return
        self._close_failed(row, code, message)
        self.log.error("%s %s failed: %s (%s)", self.noun, row.request_id, message, code)

    def _close_failed(self, row: EscrowRequestRow, code: str, message: str) -> bool:
        return self.repo.failed(row.id, code, message)

    def _claimed(self, row: EscrowRequestRow) -> EscrowRequestRow:
        """``row`` as its claim left it (the attempt it counted names the attempt's call and ticket)."""
        return self.repo.get(self.chain_id, self.address, row.request_id) or row

    def _expire_unanswered(self) -> None:
        """Fail the requests whose deadline passed before their input came: only a refund is possible now."""
        now = self.market.client.timestamp()
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.SEEN):
            if now > row.deadline:
                self._close_failed(row, "expired", f"{self.noun} {row.request_id} expired at {row.deadline} "
                                   "before its input was posted")

    # --- internals ----------------------------------------------------------------------------
    def _served_keys(self) -> dict[bytes, str]:
        return {model_id_for(self.owner, model_id): model_id for model_id in self.served()}

    def _for_us(self, args: dict[str, Any]) -> bool:
        """Whether a ``RequestCreated`` event is for this node (the court's name a node)."""
        return True

    def _created(self, event: ChainEvent, served: dict[bytes, str]) -> None:
        args = event.args
        model_id = served.get(bytes(args["modelId"]))
        if model_id is None or not self._for_us(args):
            return
        self.repo.seen(SeenRequest(
            self.chain_id, self.address, int(args["requestId"]), model_id,
            "0x" + bytes(args["inputCommitment"]).hex(), str(args["consumer"]), int(args["amount"]),
            int(args["deadline"]), event.block_number, event.tx_hash))

    def _seen(self, onchain: Req, model_id: str) -> SeenRequest:
        return SeenRequest(self.chain_id, self.address, onchain.request_id, model_id,
                           "0x" + onchain.input_commitment.hex(), onchain.consumer, onchain.amount, onchain.deadline,
                           None, None)

    def _closed_now(self, row: EscrowRequestRow) -> str | None:
        """Why ``row`` can take no input now (read on chain), or None while it is open."""
        return self._record_closed(row, self._read(row.request_id))

    # --- what each watcher says ---------------------------------------------------------------
    # _read, _open_onchain, _record_closed, _open_again, _settled_by_us: see Reorgs

    def _on_event(self, event: ChainEvent) -> None:  # noqa: B027 (most contracts have no other events to follow)
        """Events other than ``RequestCreated`` and the closing ones."""

    def _book(self, event: ChainEvent) -> None:  # noqa: B027 (only the market's payouts are booked from events)
        """Record in the node's book what ``event`` moved (after the event's own handling; an error here stops the
        batch before its cursor is saved: read again, booked once)."""

    def _wait_call(self, row: EscrowRequestRow, job_id: str) -> CallRow:
        """Wait for the request's call to be done with by the engine (final, or its settlement under way: the answer
        is mined, or committed on the court); ProofTimeout when it is still running after the proof timeout and two
        minutes (it is failed then: an answer that comes later settles nothing). A call that failed while its
        request was still this attempt's (before its answer was sent) raises its error: the attempt fails with it."""
        assert self.calls is not None, "a request's call is a call of the node's engine"
        wait = (self.proof_timeout_s or 600.0) + 120.0
        deadline, watched = time.monotonic() + wait, self.calls.queue.watch(job_id)
        try:
            while True:  # a watch resolves once the call is final (settling: the local engine's, not Celery's)
                with contextlib.suppress(TimeoutError):  # still running: looked at below
                    watched.result(max(0.0, min(1.0, deadline - time.monotonic())))
                done = self.calls.get(job_id)
                if done.is_final or done.status == CallStatus.SETTLING or time.monotonic() >= deadline:
                    break
        finally:
            watched.cancel()  # a polling watch (Celery) stops polling
        if not done.is_final and done.status != CallStatus.SETTLING:
            late = ProofTimeout(f"{self.noun} {row.request_id}: its call {done.id} is still {done.status} after "
                                f"{wait:.0f} s", job_id=done.id)
            self.calls.fail_call(done.id, late.code, late.message)
            raise late
        fresh = self.repo.get(self.chain_id, self.address, row.request_id)
        if done.status == CallStatus.FAILED and fresh is not None and fresh.status == EscrowStatus.PROVING \
                and fresh.attempts == row.attempts:
            raise from_code(done.error_code or "proving_failed", done.error_message or "the call failed",
                            {"job_id": done.id})
        return done

    @abc.abstractmethod
    def rail(self) -> Rail:
        """The payment rail of this watcher's calls (``intake/rails.py``): the node's settler settles them on it."""

    @abc.abstractmethod
    def recover(self) -> None:
        """Settle from the chain what a previous run left ``proving``."""

    @abc.abstractmethod
    def work(self) -> int:
        """Answer the requests whose input came. Returns how many were settled or committed."""
