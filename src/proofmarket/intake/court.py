"""The court watcher: escrowed attested requests (``AttestationCourt``) for the causal LMs this node serves.

    consumer                        chain (AttestationCourt)           node (this module)
    request(model, commitment, ..)  RequestCreated ──(watcher)──────►  row "seen"
    POST /v1/court/{id}/input ─────────────────────────────────────►  opens the commitment? "input_received"
                                                                        queued as a call: the engine generates and
                                                                        signs the bundle ("proving")
                                    Committed ◄─────────────────────  the court rail's settle: commit (one request)
                                                                        or commitBatch (a Merkle root over every
                                                                        generated request; ``court_steps.py``)
                                    ... challenge window: validators re-execute a sample, may challenge ...
                                    Paid ◄──────────────────────────  the rail's follow: finalize once the window closed
                                    (or Slashed + Refunded after a lost vote)

A row is ``fulfilled`` once its commitment is mined (with confirmations: ``confirming`` until its block is deep
enough; a commitment whose block left the chain leaves the request open: generated and committed again);
its ``court_status`` column then follows the court: ``committed`` (window open until ``court_window_end``),
``challenged``, ``paid`` or ``slashed`` (readers see them as ``settlement.court``, beside the court's records).
Once settled, the node asks the CourtValidator for an ERC-8004 validation record (100 paid, 0 slashed). Rows live
in the escrow table under the court's address; the thread, lease, cursor and retries are
``proofmarket.intake.watcher``'s. The node stakes on the court when the watcher starts, and again only when a
commitment is refused for a stake below the minimum (after a slash). The bundle of a committed request is readable
by its consumer and by any staked validator (``/v1/court``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from proofmarket.chain import ChainEvent
from proofmarket.chain.court import (
    AttestationCourt,
    Commitment,
    CourtRequest,
    CourtValidator,
)
from proofmarket.core.errors import CourtUnavailable, ProofMarketError
from proofmarket.db import CourtState, EscrowRepo, EscrowRequestRow, EscrowStatus
from proofmarket.intake.callback_terms import DEFAULT_RULE, CallbackRule
from proofmarket.intake.court_delivery import CourtDelivery
from proofmarket.intake.court_steps import CourtSteps, Ready
from proofmarket.intake.rails import COURT_RAIL, CourtRail, chain_ticket
from proofmarket.intake.watcher import ChainWatcher
from proofmarket.onchain import Market
from proofmarket.systems.attested import instances
from proofmarket.systems.attested.service import GenerateRequest
from proofmarket.systems.registry import ATTESTED_SYSTEM

if TYPE_CHECKING:
    from proofmarket.calls.service import CallService


class CourtService(CourtSteps, ChainWatcher[CourtRequest]):
    """Consumer side (``get``, ``post_input``) and watcher side (``scan``, ``work``, ``settle``, thread)."""

    kind, noun, contract = "court", "court request", "AttestationCourt"
    closing_events = ("Committed", "Refunded")
    unavailable = (CourtUnavailable,)

    def __init__(self, market: Market, repo: EscrowRepo, served: Callable[[], Iterable[str]], *,
                 confirmations: int | None = None, poll_s: float = 2.0, owner: str | None = None, batch_max: int = 32,
                 calls: CallService | None = None, callbacks: CallbackRule = DEFAULT_RULE) -> None:
        court = market.deployment.court
        if court is None:
            raise CourtUnavailable("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
        self.court = AttestationCourt(market.client, court)
        validator = market.deployment.court_validator
        self.validator = None if validator is None else CourtValidator(market.client, validator)
        super().__init__(market, repo, served, self.court, confirmations=confirmations, poll_s=poll_s, owner=owner,
                         calls=calls)
        self.batch_max = max(1, min(batch_max, AttestationCourt.MAX_BATCH))
        # results delivered into consumer contracts that requested through CourtCallbacks (court_delivery.py)
        self.delivery = CourtDelivery(market.client, court, self.node, callbacks)
        # (model id, request id, new status): called when a request's court status changes (webhooks)
        self.status_hooks: list[Callable[[str, int, str], None]] = []
        self.committed: Counter | None = None  # Prometheus counters, once with_metrics() ran
        self.settled: Counter | None = None
        self._commit_lock = threading.Lock()  # one commitment at a time (settle threads): each request once

    def with_metrics(self, registry: CollectorRegistry | None) -> CourtService:
        """Count commitments and outcomes on the node's Prometheus ``registry``."""
        if registry is not None:
            self.committed = Counter("proofmarket_court_commitments", "attested results committed on the court",
                                     registry=registry)
            self.settled = Counter("proofmarket_court_settled", "court requests settled, by outcome", ["outcome"],
                                   registry=registry)
        return self

    # --- consumers ----------------------------------------------------------------------------
    def post_input(self, request_id: int, doc: Any) -> EscrowRequestRow:
        """Accept the consumer's generate request if it opens the on-chain commitment; the watcher then
        generates, signs and commits it."""
        row = self.get(request_id)
        self._refuse_closed(row)
        doc = instances.escrow_request(doc)
        self.market.workspace.attested.runtime.check(row.model_id, GenerateRequest.of(doc))
        opened, form = instances.opening(doc, row.commitment)
        return self._take_input(row, opened, {"inputs": doc, "salt": None, **({"form": form} if form else {})})

    # --- the watcher --------------------------------------------------------------------------
    def start_up(self) -> None:
        """Recover, then bond the node's stake up to the court's minimum (here once; after that only when a
        commitment is refused for a stake too low: never a staking call on the way to each commitment)."""
        super().start_up()
        try:
            added, _ = self.market.stake_court_node()
        except ProofMarketError as exc:  # its first commitment tries again
            self.log.warning("court: the node could not stake yet: %s", exc.message)
        else:
            if added:
                self.log.info("court: the node staked %d (atomic USDC) on the AttestationCourt", added)

    def work(self) -> int:
        """Generate every request whose input came, then commit them: one transaction per batch. Returns
        how many were committed."""
        with self._work_lock:
            self._expire_unanswered()
            self._follow_confirming()  # final commitments are followed by settle(); orphaned ones answered again
            claimed: list[EscrowRequestRow] = []
            for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.INPUT_RECEIVED):
                if self._stop.is_set() or len(claimed) >= self.batch_max:
                    break
                if self.repo.claim(row.id):
                    claimed.append(self._claimed(row))
            # every generation queued on the engine before any is waited for: its workers run them side by side, and
            # the settler commits them (the court rail's settle: ``commit_answer``, in batches)
            jobs = [(row, self._attempt(row, partial(self._queue_generation, row))) for row in claimed]
            ready: Ready = []
            for row, job_id in jobs:
                made = None if job_id is None else self._attempt(row, partial(self._generated, row, job_id))
                if made is not None:
                    ready.append((row, made))
            return (self._commit(ready) if ready else 0) + sum(1 for _, j in jobs if j)

    def run_once(self) -> None:
        super().run_once()
        self.settle()

    def rail(self) -> CourtRail:
        return CourtRail(self)

    def recover(self) -> None:
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.PROVING):
            onchain = self.court.get_request(row.request_id)
            if onchain.status == "open":
                self.repo.release(row.id)
            else:
                self._record_closed(row, onchain)

    # --- internals ----------------------------------------------------------------------------
    def _ours(self, named: str | None) -> bool:
        return named is None or named.lower() == self.node.address.lower()

    def _for_us(self, args: dict[str, Any]) -> bool:
        return self._ours(None if int(str(args["node"]), 16) == 0 else str(args["node"]))

    def _served_keys(self) -> dict[bytes, str]:
        keys = super()._served_keys()
        return {key: model_id for key, model_id in keys.items() if self._is_attested_lm(model_id)}

    def _is_attested_lm(self, model_id: str) -> bool:
        try:
            manifest = self.market.attested_manifest(model_id)
        except ProofMarketError:
            return False
        return manifest is not None and manifest.kind == "causal-lm"

    def _read(self, request_id: int) -> CourtRequest:
        return self.court.get_request(request_id)

    def _open_onchain(self, request_id: int) -> CourtRequest | None:
        onchain = self._read(request_id)
        return None if onchain.status == "none" or not self._ours(onchain.node) else onchain

    def _closed_now(self, row: EscrowRequestRow) -> str | None:
        onchain = self._read(row.request_id)
        if onchain.status == "open" and self.market.client.timestamp() > onchain.deadline:
            return f"its deadline {onchain.deadline} passed"
        return self._record_closed(row, onchain)

    def _on_event(self, event: ChainEvent) -> None:
        if event.event == "AvailabilityChallenged":  # answered at once: the response window must not wait
            row = self.repo.get(self.chain_id, self.address, int(event.args["requestId"]))
            if row is not None and row.status == EscrowStatus.FULFILLED and self.follow_soon is not None \
                    and self._followed(row):
                self.follow_soon()  # its call's rail publishes it (``advance``), on the settler's next pass: now
            elif row is not None and row.status == EscrowStatus.FULFILLED:
                try:
                    self._publish(row)
                except ProofMarketError as exc:  # settle() tries again within the window
                    self.log.warning("court request %s: could not publish yet: %s", row.request_id, exc.message)
        elif event.event in ("Challenged", "Resolved"):
            self._wake.set()  # settle() reads the new status
            if self.follow_soon is not None:
                self.follow_soon()

    def _open_again(self, onchain: CourtRequest) -> bool:
        return onchain.status == "open"

    def _settled_by_us(self, onchain: CourtRequest) -> bool:
        return onchain.status not in ("none", "open", "refunded") and onchain.node is not None \
            and onchain.node.lower() == self.node.address.lower()

    def _record_closed(self, row: EscrowRequestRow, onchain: CourtRequest) -> str | None:
        if onchain.status == "open":
            return None
        if onchain.node is not None and onchain.node.lower() == self.node.address.lower() \
                and onchain.status != "refunded":
            self.repo.fulfilled(row.id, fulfil_tx=None, settlement={
                "request_id": row.request_id, "status": "COMMITTED", "recovered": True},
                court=CourtState(onchain.status, onchain.window_end))
        else:
            self._close_failed(row, "refunded" if onchain.status == "refunded" else "settled_elsewhere",
                               f"court request {row.request_id} is {onchain.status} on chain")
        return onchain.status

    def _queue_generation(self, row: EscrowRequestRow) -> str | None:
        """Queue the request's generation as a call of the court rail (the engine's attested system generates and
        signs it; the settler settles it once the court paid, ``intake/rails.py``): its id ("" without an engine:
        generated by ``_generated``); None when the request was closed on chain meanwhile."""
        if self._record_closed(row, self.court.get_request(row.request_id)) is not None:
            return None
        if self.calls is None:
            return ""
        ticket = chain_ticket(COURT_RAIL, self.chain_id, self.address, row)  # a call queued before: found by its key
        return self.calls.submit_request(row.model_id, (row.inputs or {})["inputs"], key=ticket.nonce, ticket=ticket,
                                         system=ATTESTED_SYSTEM, rail=self.kind).id

    def _generated(self, row: EscrowRequestRow, job_id: str) -> Commitment | None:
        """Wait for the request's call (generated, then committed by the settler); a watcher outside a node
        generates it here and returns its commitment (committed by ``work``)."""
        if self.calls is None:
            return self._commitment(row, self.market.generate_attested(row.model_id, (row.inputs or {})["inputs"])[1])
        self._wait_call(row, job_id)  # a call failed before its answer was committed fails this attempt
        return None
