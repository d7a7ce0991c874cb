"""The escrow watcher: on-chain requests for the models this node serves, proved and fulfilled by the node.

    consumer                     chain                          node (this module)
    requestInference  ───────►  RequestCreated  ──(watcher)──►  row "seen"
    POST /v1/requests/{id}/input ───────────────────────────►  opens the commitment? "input_received"
                                                                 claim: "proving" -> prove -> fulfill
                                 RequestFulfilled ◄───────────  "fulfilled" (or "failed" with a code)

State lives in the database, one row per (chain, market, request id), and every status change is a
conditional update: only one thread ever claims a request. The event cursor (first block not yet fully
processed) is saved after each batch, so a restarted node resumes where it stopped; events are
delivered at least once and recording one is idempotent. Before a proof is submitted the on-chain
status is read again, and the contract refuses a second ``fulfill``: a request is never fulfilled twice.
After a restart a request left ``proving`` is settled from the chain (fulfilled by us: recorded; still
open: proved again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from proofmarket import models
from proofmarket.calls.metrics import EscrowMetrics
from proofmarket.chain import ChainEvent, EventWatcher, model_id_for
from proofmarket.chain.types import InferenceRequest, RequestStatus
from proofmarket.core.errors import (
    ChainError,
    InputMismatch,
    ProofMarketError,
    ProofTimeout,
    RequestClosed,
    UnknownRequest,
    UsageError,
    UseCourt,
    from_code,
)
from proofmarket.core.settings import Settings
from proofmarket.db import Database, EscrowRepo, EscrowRequestRow, EscrowStatus, LeaseRepo, ModelRepo, SeenRequest
from proofmarket.market import Market
from proofmarket.market.results import settlement_summary
from proofmarket.systems.ezkl.commitment import input_commitment
from proofmarket.systems.workspace import Workspace

log = logging.getLogger("proofmarket.escrow")

MAX_ATTEMPTS = 3  # transient failures (RPC, a stopped prover) before a request is failed for good
CLOSED = (EscrowStatus.FULFILLED, EscrowStatus.FAILED)
OPEN = tuple(s for s in EscrowStatus if s not in CLOSED)


def _generate_request(doc: Any) -> Any:
    from proofmarket.systems.attested.service import GenerateRequest

    return GenerateRequest.of(doc)


class EscrowService:
    """Consumer side (``get``, ``post_input``) and watcher side (``scan``, ``work``, ``recover``, thread)."""

    def __init__(self, market: Market, repo: EscrowRepo, served: Callable[[], Iterable[str]], *,
                 confirmations: int = 1, poll_s: float = 2.0, batch_size: int = 2_000,
                 proof_timeout_s: float | None = None, owner: str | None = None) -> None:
        self.market = market
        # the registry listings served: model ids are namespaced by owner, so a squatter's listing of the
        # same CID (another verifier, another price) has another id and is never proved here
        self.owner = owner or market.accounts.owner.address
        self.metrics: EscrowMetrics | None = None
        self.repo = repo
        self.served = served
        self.chain_id = market.client.chain_id
        self.address = market.market.address
        self.cursor_name = f"escrow:{self.chain_id}:{self.address.lower()}"
        self.proof_timeout_s = proof_timeout_s
        start = repo.cursor(self.cursor_name)
        if start is None:
            start = market.deployment.contracts["InferenceMarket"].block
        self.events = EventWatcher(market.client, {"market": market.market}, from_block=start,
                                   confirmations=confirmations, batch_size=batch_size, poll_interval=poll_s)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._work_lock = threading.Lock()
        self.lease: LeaseRepo | None = None  # several nodes on one database: one follows the market at a time
        self.jobs: Any = None  # the node's JobService: proofs go through its queue (None: the workspace's prover)
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    @classmethod
    def for_node(cls, settings: Settings, db: Database, workspace: Workspace,
                 registry: CollectorRegistry | None = None) -> EscrowService | None:
        """The node's escrow service, or None when the setting is off or (auto) no market is deployed."""
        if settings.escrow_watcher == "off":
            return None
        try:
            market = Market.open(workspace=workspace)
        except ProofMarketError as exc:
            if settings.escrow_watcher == "on":
                raise
            log.info("escrow watcher off: %s", exc.message)
            return None
        model_repo = ModelRepo(db)
        service = cls(market, EscrowRepo(db), lambda: [row.id for row in model_repo.list()],
                      confirmations=settings.escrow_confirmations, poll_s=settings.escrow_poll_s,
                      proof_timeout_s=settings.proof_timeout_s, owner=settings.model_owner).with_metrics(registry)
        service.lease = LeaseRepo(db)
        return service

    # --- consumers ----------------------------------------------------------------------------
    def get(self, request_id: int) -> EscrowRequestRow:
        """The node's row for a request; a request the watcher has not reached yet is read from the chain."""
        row = self.repo.get(self.chain_id, self.address, request_id)
        if row is not None:
            return row
        if request_id < 1:
            raise UnknownRequest(f"no escrow request {request_id} on this market", request_id=request_id)
        onchain = self.market.market.get_request(request_id)
        served = self._served_keys()
        if onchain.status is RequestStatus.NONE or onchain.model_key not in served:
            raise UnknownRequest(f"no escrow request {request_id} for a model this node serves",
                                 request_id=request_id)
        return self.repo.seen(self._seen(onchain, served[onchain.model_key]))

    def post_input(self, request_id: int, inputs_doc: Any, salt: list[int] | None = None) -> EscrowRequestRow:
        """Accept the consumer's input if it opens the on-chain commitment; the watcher then proves it."""
        row = self.get(request_id)
        if row.status in CLOSED:
            raise RequestClosed(f"request {request_id} is {row.status}: it takes no input", request_id=request_id,
                                status=row.status)
        if self.market.attested_manifest(row.model_id) is not None:  # a generate request
            from proofmarket.market import attested_escrow

            if self.market.deployment.court is not None:
                raise UseCourt(f"model {row.model_id} is attested: its requests are escrowed on the AttestationCourt "
                               f"({self.market.deployment.court}); refund request {request_id} after its deadline",
                               request_id=request_id)

            inputs_doc = attested_escrow.escrow_request(inputs_doc)
            self.market.workspace.attested.runtime.check(row.model_id, _generate_request(inputs_doc))
            local, salt = attested_escrow.input_commitment(inputs_doc), None
        else:
            local = self._proven_commitment(row, request_id, inputs_doc, salt)
        if local.lower() != row.commitment.lower():
            raise InputMismatch(f"the input does not open request {request_id}'s on-chain commitment",
                                request_id=request_id, commitment=row.commitment, posted=local)
        if row.status == EscrowStatus.SEEN:
            closed = self._closed_on_chain(row, self.market.market.get_request(request_id))
            if closed is not None:
                raise RequestClosed(f"request {request_id} is closed on chain ({closed})", request_id=request_id)
            self.repo.input_received(row.id, {"inputs": inputs_doc, "salt": salt})
            self._wake.set()
        found = self.repo.get(self.chain_id, self.address, request_id)
        assert found is not None
        return found

    def _proven_commitment(self, row: EscrowRequestRow, request_id: int, inputs_doc: Any,
                           salt: list[int] | None) -> str:
        manifest, info = self.market.workspace.prover.model(row.model_id)
        arrays = models.parse_inputs(inputs_doc, info)
        if manifest.salt_elements and salt is None:
            raise InputMismatch(f"model {row.model_id} hashes its input with a salt: post the salt of the "
                                "commitment with the input", request_id=request_id)
        try:
            return input_commitment(self.market.workspace.store, manifest, arrays, salt).commitment
        except UsageError as exc:
            raise InputMismatch(f"the input does not open request {request_id}'s commitment: {exc.message}",
                                request_id=request_id) from exc

    # --- the watcher --------------------------------------------------------------------------
    def scan(self) -> int:
        """Record the confirmed events of one batch of blocks; save the cursor. Returns the events handled."""
        batch = self.events.poll()
        served = self._served_keys()
        for event in batch:
            self._on_event(event, served)
        self.repo.save_cursor(self.cursor_name, self.events.next_block)
        return len(batch)

    def work(self) -> int:
        """Prove and fulfil every request whose input was received. Returns how many were settled."""
        done = 0
        with self._work_lock:
            now = self.market.client.timestamp()
            for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.SEEN):
                if now > row.deadline:  # no input came in time: only a refund is possible now
                    self._close_failed(row, "expired", f"request {row.request_id} expired at {row.deadline} "
                                       "before its input was posted")
            for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.INPUT_RECEIVED):
                if self._stop.is_set():
                    break
                if self.repo.claim(row.id):
                    done += self._fulfil(row)
        return done

    def recover(self) -> None:
        """At start: settle from the chain what a previous run left ``proving``."""
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.PROVING):
            onchain = self.market.market.get_request(row.request_id)
            if self._closed_on_chain(row, onchain) is None:
                self.repo.release(row.id)
                log.info("escrow request %s was being proved when the node stopped: proving it again",
                         row.request_id)

    def run_once(self) -> None:
        while self.scan():
            pass
        self.work()

    def start(self) -> None:
        """Run the watcher in a daemon thread: recover what a previous run left, then poll until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="escrow-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _leader(self) -> bool:
        """Whether this node holds (or just took) the lease on following this contract."""
        if self.lease is None:
            return True
        try:
            return self.lease.acquire(self.cursor_name, self.holder, max(15.0, 5 * self.poll_s))
        except Exception:
            log.warning("could not renew the watcher lease", exc_info=True)
            return False

    def _loop(self) -> None:
        recovered = False
        while not self._stop.is_set():
            if not self._leader():  # another node of this database follows the market: stand by
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            try:  # the chain may not answer yet: recover (then poll) as soon as it does
                if not recovered:
                    self.recover()
                    recovered = True
                self.run_once()
            except Exception:  # a bad poll must not kill the watcher: log and try again
                log.exception("escrow watcher: poll failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # --- internals ----------------------------------------------------------------------------
    def _served_keys(self) -> dict[bytes, str]:
        return {model_id_for(self.owner, model_id): model_id for model_id in self.served()}

    def _seen(self, onchain: InferenceRequest, model_id: str, event: ChainEvent | None = None) -> SeenRequest:
        return SeenRequest(self.chain_id, self.address, onchain.request_id, model_id,
                           "0x" + onchain.input_commitment.hex(), onchain.consumer, onchain.amount, onchain.deadline,
                           event.block_number if event else None, event.tx_hash if event else None)

    def _on_event(self, event: ChainEvent, served: dict[bytes, str]) -> None:
        args = event.args
        if event.event == "RequestCreated":
            model_id = served.get(bytes(args["modelId"]))
            if model_id is None:
                return
            self.repo.seen(SeenRequest(
                self.chain_id, self.address, int(args["requestId"]), model_id,
                "0x" + bytes(args["inputCommitment"]).hex(), str(args["consumer"]), int(args["amount"]),
                int(args["deadline"]), event.block_number, event.tx_hash))
        elif event.event in ("RequestFulfilled", "ProofRejected", "RequestRefunded"):
            row = self.repo.get(self.chain_id, self.address, int(args["requestId"]))
            if row is not None and row.status in (EscrowStatus.SEEN, EscrowStatus.INPUT_RECEIVED):
                self._closed_on_chain(row, self.market.market.get_request(row.request_id))

    def _closed_on_chain(self, row: EscrowRequestRow, onchain: InferenceRequest) -> str | None:
        """Record a request that can no longer be fulfilled by us; None when it is still open."""
        me = self.market.accounts.prover.address.lower()
        if onchain.status is RequestStatus.REJECTED and (onchain.prover or "").lower() == me:
            self._close_failed(row, "proof_rejected", f"request {row.request_id}: the verifier rejected our proof "
                               "(the consumer was refunded and our stake slashed)")
            return "rejected"
        if onchain.status is RequestStatus.FULFILLED:
            if (onchain.prover or "").lower() == me:
                self.repo.fulfilled(row.id, fulfil_tx=None, settlement={
                    "request_id": row.request_id, "status": onchain.status.name, "prover": onchain.prover,
                    "output_hash": "0x" + onchain.output_hash.hex() if onchain.output_hash else None,
                    "recovered": True})
                return onchain.status.name.lower()
            self._close_failed(row, "settled_elsewhere",
                               f"request {row.request_id} was settled by another prover ({onchain.prover})")
            return "settled by another prover"
        if onchain.status is RequestStatus.REFUNDED:
            self._close_failed(row, "refunded", f"request {row.request_id} was refunded to the consumer")
            return "refunded"
        if self.market.client.timestamp() > onchain.deadline:
            self._close_failed(row, "expired", f"request {row.request_id} expired at {onchain.deadline}")
            return "expired"
        return None

    def _close_failed(self, row: EscrowRequestRow, code: str, message: str) -> None:
        if self.repo.failed(row.id, code, message) and self.metrics is not None:
            self.metrics.closed.labels("failed").inc()
            self.metrics.failures.labels(code).inc()

    def with_metrics(self, registry: CollectorRegistry | None) -> EscrowService:
        """Report on ``registry`` (after construction: a service that failed to build registers nothing)."""
        if registry is not None:
            self.metrics = EscrowMetrics(registry)
            self.metrics.track_open(self._open_count)
        return self

    def _open_count(self) -> float:
        try:
            return float(self.repo.count_with_status(self.chain_id, self.address, *OPEN))
        except Exception:  # a scrape must not fail because the database hiccuped
            log.warning("could not count the open escrow requests", exc_info=True)
            return float("nan")

    def _fulfil(self, row: EscrowRequestRow) -> int:
        request_id = row.request_id
        started = time.perf_counter()
        try:
            onchain = self.market.market.get_request(request_id)
            if self._closed_on_chain(row, onchain) is not None:
                return 0
            self.market.check_entry(row.model_id, onchain.model_key)  # the listing is the model we prove
            self.market.claim(onchain)  # only the claimer can fulfil: a copied fulfil cannot take our work
            doc = row.inputs or {}
            attested = self.market.attested_manifest(row.model_id) is not None
            if attested and self.market.deployment.court is not None:
                self._close_failed(row, UseCourt.code, f"request {request_id}: attested requests are answered on "
                                   "the AttestationCourt (refund this one after its deadline)")
                return 0
            if attested:
                bundle, bundle_cid = self.market.generate_attested(row.model_id, doc.get("inputs"))
                output: Any = bundle.output.text
            elif self.jobs is not None:  # the node's job queue: one proving path (metrics, limits, workers)
                bundle, bundle_cid = self._prove_as_job(row, doc)
                output = bundle.output.values
            else:
                proved = self.market.workspace.prover.prove(row.model_id, doc.get("inputs"), self.proof_timeout_s,
                                                            salt=doc.get("salt"))
                bundle, bundle_cid, output = proved.bundle, proved.bundle_cid, proved.bundle.output.values
            self.repo.proved(row.id, bundle_cid)
            # proving takes time: someone may have settled it meanwhile (the contract would refuse anyway)
            if self._closed_on_chain(row, self.market.market.get_request(request_id)) is not None:
                return 0
            try:
                settlement = self.market.submit_attestation(request_id, bundle, doc.get("inputs")) if attested \
                    else self.market.submit_proof(request_id, bundle)
            except ChainError:
                if self._closed_on_chain(row, self.market.market.get_request(request_id)) is not None:
                    return 1  # our transaction went through after all
                raise
        except ProofMarketError as exc:
            self._failed_attempt(row, exc.code, exc.message, transient=isinstance(exc, ChainError))
            return 0
        except Exception as exc:
            log.exception("escrow request %s: unexpected error", request_id)
            self._failed_attempt(row, "internal_error", str(exc), transient=True)
            return 0
        summary = {**settlement_summary(settlement), "bundle_cid": bundle_cid, "output": output}
        if not attested:  # proven work: an ERC-8004 validation record, answered by the ZkValidator from chain state
            summary["validation"] = self._validation(request_id, bundle_cid, settlement.tx.tx_hash)
        if not settlement.valid:  # the verifier said no: refunded and slashed, never shown as fulfilled
            self._close_failed(row, "proof_rejected", f"request {request_id}: the verifier rejected the proof in "
                               f"tx {settlement.tx.tx_hash} (the consumer was refunded)")
            log.error("escrow request %s: proof rejected on chain in tx %s", request_id, settlement.tx.tx_hash)
            return 1
        self.repo.fulfilled(row.id, fulfil_tx=settlement.tx.tx_hash, settlement=summary)
        if self.metrics is not None:
            self.metrics.fulfil.observe(time.perf_counter() - started)
            self.metrics.closed.labels(settlement.status.name.lower()).inc()
        log.info("escrow request %s %s in tx %s", request_id, settlement.status.name.lower(), settlement.tx.tx_hash)
        return 1

    def _prove_as_job(self, row: EscrowRequestRow, doc: dict[str, Any]) -> tuple[Any, str]:
        """Prove the request's input as a job of the node's queue (seen in /v1/jobs' counts, /metrics, /health,
        run by the local provers or the celery workers) and wait for it. One job per attempt: a restarted
        watcher finds the job of its attempt again by its key."""
        from proofmarket.systems.ezkl.bundle import ProofBundle

        assert self.jobs is not None
        key = f"escrow:{self.chain_id}:{self.address.lower()}:{row.request_id}:{row.attempts}"
        job, _ = self.jobs.submit_prove(row.model_id, doc.get("inputs"), key=key, salt=doc.get("salt"))
        wait = (self.proof_timeout_s or 600.0) + 120.0
        with contextlib.suppress(TimeoutError):  # still running: said below
            self.jobs.queue.watch(job.id).result(wait)
        done = self.jobs.get(job.id)
        if done.status == "failed":
            raise from_code(done.error_code or "proving_failed", done.error_message or "the proof failed",
                            {"job_id": done.id})
        if done.bundle_cid is None or done.status not in ("proved", "settled"):
            raise ProofTimeout(f"escrow request {row.request_id}: its proof job {done.id} is still {done.status} "
                               f"after {wait:.0f} s", job_id=done.id)
        return ProofBundle.parse(self.market.workspace.store.get_json(done.bundle_cid)), done.bundle_cid

    def _validation(self, request_id: int, bundle_cid: str, fulfil_tx: str) -> dict[str, Any] | None:
        """Record the settled request on the ERC-8004 ValidationRegistry (never fails the request)."""
        from proofmarket.market.validations import record_escrow

        try:
            return record_escrow(self.market, request_id, bundle_cid, fulfil_tx)
        except Exception:
            log.warning("escrow request %s: no ERC-8004 validation record", request_id, exc_info=True)
            return None

    def _failed_attempt(self, row: EscrowRequestRow, code: str, message: str, *, transient: bool) -> None:
        if self._stop.is_set() or (transient and row.attempts + 1 < MAX_ATTEMPTS):
            self.repo.release(row.id)  # stopping, or worth another try: prove again later
            log.warning("escrow request %s: %s (%s), will retry", row.request_id, message, code)
            return
        self._close_failed(row, code, message)
        log.error("escrow request %s failed: %s (%s)", row.request_id, message, code)
