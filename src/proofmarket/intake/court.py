"""The court watcher: escrowed attested requests (``AttestationCourt``) for the causal LMs this node serves.

    consumer                        chain (AttestationCourt)           node (this module)
    request(model, commitment, ..)  RequestCreated ──(watcher)──────►  row "seen"
    POST /v1/court/{id}/input ─────────────────────────────────────►  opens the commitment? "input_received"
                                                                        generate + sign the bundle ("proving")
                                    Committed ◄─────────────────────  commit (one request) or commitBatch
                                                                        (a Merkle root over every ready request)
                                    ... challenge window: validators re-execute a sample, may challenge ...
                                    Paid ◄──────────────────────────  finalize once the window closed
                                    (or Slashed + Refunded after a lost vote)

A row is ``fulfilled`` once its commitment is mined; ``settlement.court`` then follows the court: ``committed``
(window open until ``window_end``), ``challenged``, ``paid`` or ``slashed``. Once settled, the node asks the
CourtValidator for an ERC-8004 validation record (100 paid, 0 slashed). Rows live in the escrow table under the
court's address; events are delivered at least once and every status change is conditional (as for escrow).
The bundle of a committed request is readable by its consumer and by any staked validator (``/v1/court``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from proofmarket.chain import ChainEvent, EventWatcher, model_id_for
from proofmarket.chain.court import SETTLED, AttestationCourt, Commitment, CourtRequest, CourtValidator
from proofmarket.core.errors import (
    ChainError,
    CourtUnavailable,
    InputMismatch,
    ProofMarketError,
    RequestClosed,
    UnknownRequest,
)
from proofmarket.core.settings import Settings
from proofmarket.db import Database, EscrowRepo, EscrowRequestRow, EscrowStatus, LeaseRepo, ModelRepo, SeenRequest
from proofmarket.intake.escrow import MAX_ATTEMPTS
from proofmarket.market import Market
from proofmarket.store.cid import digest_of
from proofmarket.systems.workspace import Workspace

log = logging.getLogger("proofmarket.court")


class CourtService:
    """Consumer side (``get``, ``post_input``) and watcher side (``scan``, ``work``, ``settle``, thread)."""

    def __init__(self, market: Market, repo: EscrowRepo, served: Callable[[], Iterable[str]], *,
                 confirmations: int = 1, poll_s: float = 2.0, owner: str | None = None, batch_max: int = 32) -> None:
        court = market.deployment.court
        if court is None:
            raise CourtUnavailable("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
        self.market = market
        self.court = AttestationCourt(market.client, court)
        validator = market.deployment.court_validator
        self.validator = None if validator is None else CourtValidator(market.client, validator)
        self.repo = repo
        self.served = served
        self.owner = owner or market.accounts.owner.address
        self.chain_id = market.client.chain_id
        self.address = self.court.address
        self.batch_max = max(1, min(batch_max, AttestationCourt.MAX_BATCH))
        self.cursor_name = f"court:{self.chain_id}:{self.address.lower()}"
        start = repo.cursor(self.cursor_name)
        if start is None:
            start = market.deployment.contracts["AttestationCourt"].block
        self.events = EventWatcher(market.client, {"court": self.court}, from_block=start,
                                   confirmations=confirmations, poll_interval=poll_s)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._work_lock = threading.Lock()
        self.lease: LeaseRepo | None = None  # several nodes on one database: one follows the market at a time
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.committed: Any = None  # Prometheus counters, once with_metrics() ran
        self.settled: Any = None

    def with_metrics(self, registry: Any) -> CourtService:
        """Count commitments and outcomes on the node's Prometheus ``registry``."""
        if registry is not None:
            from prometheus_client import Counter

            self.committed = Counter("proofmarket_court_commitments", "attested results committed on the court",
                                     registry=registry)
            self.settled = Counter("proofmarket_court_settled", "court requests settled, by outcome", ["outcome"],
                                   registry=registry)
        return self

    @classmethod
    def for_node(cls, settings: Settings, db: Database, workspace: Workspace,
                 registry: Any = None) -> CourtService | None:
        """The node's court watcher, or None when escrow is off or (auto) no court is deployed."""
        if settings.escrow_watcher == "off":
            return None
        try:
            market = Market.open(workspace=workspace)
            model_repo = ModelRepo(db)
            service = cls(market, EscrowRepo(db), lambda: [row.id for row in model_repo.list()],
                          confirmations=settings.escrow_confirmations, poll_s=settings.escrow_poll_s,
                          owner=settings.model_owner).with_metrics(registry)
            service.lease = LeaseRepo(db)
            return service
        except ProofMarketError as exc:
            if settings.escrow_watcher == "on" and not isinstance(exc, CourtUnavailable):
                raise
            log.info("court watcher off: %s", exc.message)
            return None

    @property
    def node(self) -> Any:
        return self.market.accounts.prover

    # --- consumers ----------------------------------------------------------------------------
    def get(self, request_id: int) -> EscrowRequestRow:
        row = self.repo.get(self.chain_id, self.address, request_id)
        if row is not None:
            return row
        onchain = self.court.get_request(request_id) if request_id >= 1 else None
        served = self._served_keys()
        if onchain is None or onchain.status == "none" or onchain.model_key not in served \
                or not self._for_us(onchain.node):
            raise UnknownRequest(f"no court request {request_id} for a model this node serves",
                                 request_id=request_id)
        return self.repo.seen(self._seen(onchain, served[onchain.model_key]))

    def post_input(self, request_id: int, doc: Any) -> EscrowRequestRow:
        """Accept the consumer's generate request if it opens the on-chain commitment; the watcher then
        generates, signs and commits it."""
        from proofmarket.market import attested_escrow
        from proofmarket.systems.attested.service import GenerateRequest

        row = self.get(request_id)
        if row.status in (EscrowStatus.FULFILLED, EscrowStatus.FAILED):
            raise RequestClosed(f"court request {request_id} is {row.status}: it takes no input",
                                request_id=request_id, status=row.status)
        doc = attested_escrow.escrow_request(doc)
        self.market.workspace.attested.runtime.check(row.model_id, GenerateRequest.of(doc))
        local = attested_escrow.input_commitment(doc)
        if local.lower() != row.commitment.lower():
            raise InputMismatch(f"the request does not open court request {request_id}'s on-chain commitment",
                                request_id=request_id, commitment=row.commitment, posted=local)
        if row.status == EscrowStatus.SEEN:
            onchain = self.court.get_request(request_id)
            if onchain.status != "open" or self.market.client.timestamp() > onchain.deadline:
                raise RequestClosed(f"court request {request_id} is {onchain.status} on chain (deadline "
                                    f"{onchain.deadline})", request_id=request_id)
            self.repo.input_received(row.id, {"inputs": doc, "salt": None})
            self._wake.set()
        found = self.repo.get(self.chain_id, self.address, request_id)
        assert found is not None
        return found

    # --- the watcher --------------------------------------------------------------------------
    def scan(self) -> int:
        batch = self.events.poll()
        served = self._served_keys()
        for event in batch:
            self._on_event(event, served)
        self.repo.save_cursor(self.cursor_name, self.events.next_block)
        return len(batch)

    def work(self) -> int:
        """Generate every request whose input came, then commit them: one transaction per batch. Returns
        how many were committed."""
        with self._work_lock:
            now = self.market.client.timestamp()
            for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.SEEN):
                if now > row.deadline:
                    self.repo.failed(row.id, "expired", f"court request {row.request_id} expired at "
                                     f"{row.deadline} before its input was posted")
            ready: list[tuple[EscrowRequestRow, Commitment]] = []
            for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.INPUT_RECEIVED):
                if self._stop.is_set() or len(ready) >= self.batch_max:
                    break
                if self.repo.claim(row.id):
                    made = self._generate(row)
                    if made is not None:
                        ready.append((row, made))
            return self._commit(ready) if ready else 0

    def settle(self) -> int:
        """Finalize our commitments whose window closed, record verdicts (paid, slashed) and their ERC-8004
        validation. Returns how many settled."""
        done = 0
        now = self.market.client.timestamp()
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.FULFILLED):
            court = dict((row.settlement or {}).get("court") or {})
            if court.get("status") in SETTLED:
                continue
            try:
                onchain = self.court.get_request(row.request_id)
                if onchain.status == "withheld" and now <= onchain.window_end:
                    self._publish(row)  # challenged as unavailable: the committed bytes go on chain
                    onchain = self.court.get_request(row.request_id)
                if onchain.status == "committed" and now > onchain.window_end:
                    self.court.finalize(row.request_id, self.node)
                    onchain = self.court.get_request(row.request_id)
                elif onchain.status in ("challenged", "withheld") and now > onchain.window_end:
                    self.court.resolve(row.request_id, self.node)  # the vote's (or the response's) end
                    onchain = self.court.get_request(row.request_id)
                if onchain.status != court.get("status"):
                    court.update(status=onchain.status, window_end=onchain.window_end)
                    if onchain.status in SETTLED:
                        court["validation"] = self._validation(row)
                        done += 1
                        if self.settled is not None:
                            self.settled.labels(onchain.status).inc()
                    self.repo.update_settlement(row.id, {**(row.settlement or {}), "court": court})
            except ProofMarketError as exc:
                log.warning("court request %s: could not settle yet: %s", row.request_id, exc.message)
        return done

    def run_once(self) -> None:
        while self.scan():
            pass
        self.work()
        self.settle()

    def recover(self) -> None:
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.PROVING):
            onchain = self.court.get_request(row.request_id)
            if onchain.status == "open":
                self.repo.release(row.id)
            else:
                self._record_closed(row, onchain)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="court-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

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
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                self.run_once()
            except Exception:
                log.exception("court watcher: poll failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # --- internals ----------------------------------------------------------------------------
    def _for_us(self, named: str | None) -> bool:
        return named is None or named.lower() == self.node.address.lower()

    def _served_keys(self) -> dict[bytes, str]:
        attested = [m for m in self.served() if self._is_attested_lm(m)]
        return {model_id_for(self.owner, model_id): model_id for model_id in attested}

    def _is_attested_lm(self, model_id: str) -> bool:
        try:
            manifest = self.market.attested_manifest(model_id)
        except ProofMarketError:
            return False
        return manifest is not None and manifest.kind == "causal-lm"

    def _seen(self, onchain: CourtRequest, model_id: str, event: ChainEvent | None = None) -> SeenRequest:
        return SeenRequest(self.chain_id, self.address, onchain.request_id, model_id,
                           "0x" + onchain.input_commitment.hex(), onchain.consumer, onchain.amount, onchain.deadline,
                           event.block_number if event else None, event.tx_hash if event else None)

    def _on_event(self, event: ChainEvent, served: dict[bytes, str]) -> None:
        args = event.args
        if event.event == "RequestCreated":
            model_id = served.get(bytes(args["modelId"]))
            if model_id is None or not self._for_us(None if int(str(args["node"]), 16) == 0 else str(args["node"])):
                return
            self.repo.seen(SeenRequest(
                self.chain_id, self.address, int(args["requestId"]), model_id,
                "0x" + bytes(args["inputCommitment"]).hex(), str(args["consumer"]), int(args["amount"]),
                int(args["deadline"]), event.block_number, event.tx_hash))
        elif event.event in ("Committed", "Refunded"):
            row = self.repo.get(self.chain_id, self.address, int(args["requestId"]))
            if row is not None and row.status in (EscrowStatus.SEEN, EscrowStatus.INPUT_RECEIVED):
                self._record_closed(row, self.court.get_request(row.request_id))
        elif event.event == "AvailabilityChallenged":  # answered at once: the response window must not wait
            row = self.repo.get(self.chain_id, self.address, int(args["requestId"]))  # for generation
            if row is not None and row.status == EscrowStatus.FULFILLED:
                try:
                    self._publish(row)
                except ProofMarketError as exc:  # settle() tries again within the window
                    log.warning("court request %s: could not publish yet: %s", row.request_id, exc.message)
        elif event.event in ("Challenged", "Resolved"):
            self._wake.set()  # settle() reads the new status

    def _record_closed(self, row: EscrowRequestRow, onchain: CourtRequest) -> None:
        if onchain.status == "open":
            return
        if onchain.node is not None and onchain.node.lower() == self.node.address.lower() \
                and onchain.status != "refunded":
            self.repo.fulfilled(row.id, fulfil_tx=None, settlement={
                "request_id": row.request_id, "status": "COMMITTED", "recovered": True,
                "court": {"status": onchain.status, "window_end": onchain.window_end}})
            return
        self.repo.failed(row.id, "refunded" if onchain.status == "refunded" else "settled_elsewhere",
                         f"court request {row.request_id} is {onchain.status} on chain")

    def _generate(self, row: EscrowRequestRow) -> Commitment | None:
        from proofmarket.market import attested_escrow

        doc = (row.inputs or {}).get("inputs")
        try:
            onchain = self.court.get_request(row.request_id)
            if onchain.status != "open":
                self._record_closed(row, onchain)
                return None
            bundle, bundle_cid = self.market.generate_attested(row.model_id, doc)
            self.repo.proved(row.id, bundle_cid)
            return Commitment(row.request_id, attested_escrow.instances_of(bundle, doc), digest_of(bundle_cid))
        except ProofMarketError as exc:
            self._failed_attempt(row, exc.code, exc.message, transient=isinstance(exc, ChainError))
        except Exception as exc:
            log.exception("court request %s: unexpected error", row.request_id)
            self._failed_attempt(row, "internal_error", str(exc), transient=True)
        return None

    def _commit(self, ready: list[tuple[EscrowRequestRow, Commitment]]) -> int:
        try:
            self.market.stake_court_node()
            if len(ready) == 1:
                row, c = ready[0]
                tx = self.court.commit(c.request_id, c.instances, self.node, c.bundle_digest)
            else:
                tx = self.court.commit_batch([c for _, c in ready], self.node)
        except ProofMarketError as exc:
            for row, _ in ready:  # a batch fails as one: each request is tried again, alone if need be
                fresh = self.repo.get(self.chain_id, self.address, row.request_id)
                onchain = self.court.get_request(row.request_id)
                if onchain.status != "open" and fresh is not None:
                    self._record_closed(fresh, onchain)
                elif fresh is not None:
                    self._failed_attempt(fresh, exc.code, exc.message, transient=isinstance(exc, ChainError))
            self.batch_max = 1 if len(ready) > 1 else self.batch_max
            return 0
        committed = {int(e["requestId"]): int(e["windowEnd"]) for e in self.court.decode_events(tx, "Committed")}
        for row, c in ready:
            summary = {"request_id": c.request_id, "status": "COMMITTED", "tx_hash": tx.tx_hash,
                       "bundle_digest": "0x" + c.bundle_digest.hex(), "batch": len(ready),
                       "court": {"status": "committed", "window_end": committed.get(c.request_id)}}
            self.repo.fulfilled(row.id, fulfil_tx=tx.tx_hash, settlement=summary)
        if self.committed is not None:
            self.committed.inc(len(ready))
        log.info("court: committed %d request(s) in tx %s", len(ready), tx.tx_hash)
        return len(ready)

    def _publish(self, row: EscrowRequestRow) -> None:
        """Answer an availability challenge: publish the committed bundle on chain (its sha256 is the commitment's
        digest), so every validator can judge it and the challenger takes its bond back."""
        if row.bundle_cid is None:
            log.error("court request %s: challenged as withheld but no bundle is stored", row.request_id)
            return
        self.court.publish(row.request_id, self.market.workspace.store.get(row.bundle_cid), self.node)
        log.warning("court request %s: challenged as withheld: bundle published on chain", row.request_id)

    def _failed_attempt(self, row: EscrowRequestRow, code: str, message: str, *, transient: bool) -> None:
        fresh = self.repo.get(self.chain_id, self.address, row.request_id) or row  # attempts counted at claim
        if self._stop.is_set() or (transient and fresh.attempts < MAX_ATTEMPTS):
            self.repo.release(row.id)
            log.warning("court request %s: %s (%s), will retry", row.request_id, message, code)
            return
        self.repo.failed(row.id, code, message)
        log.error("court request %s failed: %s (%s)", row.request_id, message, code)

    def _validation(self, row: EscrowRequestRow) -> dict[str, Any] | None:
        """The ERC-8004 validation record of a settled request (never fails the settlement)."""
        from proofmarket.market.validations import record_court

        if self.validator is None or row.bundle_cid is None:
            return None
        try:
            return record_court(self.market, self.validator, row.request_id, row.bundle_cid, row.fulfil_tx or "")
        except Exception:
            log.warning("court request %s: no ERC-8004 validation record", row.request_id, exc_info=True)
            return None
