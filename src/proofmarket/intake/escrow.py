"""The escrow watcher: on-chain requests for the models this node serves, proved and fulfilled by the node.

    consumer                     chain                          node (this module)
    requestInference  ───────►  RequestCreated  ──(watcher)──►  row "seen"
    POST /v1/requests/{id}/input ───────────────────────────►  opens the commitment? "input_received"
                                                                 claim: "proving" -> prove -> fulfill
                                 RequestFulfilled ◄───────────  "fulfilled" (or "failed" with a code)

State lives in the database, one row per (chain, market, request id), and every status change is a
conditional update: only one thread ever claims a request. The event cursor (first block not yet fully
processed) is saved after each batch, so a restarted node resumes where it stopped; events are
delivered at least once and recording one is idempotent (the thread, lease, cursor and retries are
``proofmarket.intake.watcher``'s). Before a proof is submitted the on-chain status is read again, and the
contract refuses a second ``fulfill``: a request is never fulfilled twice. After a restart a request left
``proving`` is settled from the chain (fulfilled by us: recorded; still open: proved again). With confirmations (a
real chain) a mined fulfil is ``confirming`` until its block is deep enough, then ``fulfilled`` (and its ERC-8004
validation recorded); a fulfil whose block left the chain leaves the request open: it is answered again, with the
proof already made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client import CollectorRegistry

from proofmarket import models
from proofmarket.calls.metrics import EscrowMetrics
from proofmarket.chain import ChainEvent
from proofmarket.chain.types import Fulfilment, InferenceRequest, RequestStatus
from proofmarket.core.errors import ChainError, InputMismatch, UsageError, UseCourt
from proofmarket.core.settings import Settings
from proofmarket.db import Database, EscrowRepo, EscrowRequestRow, EscrowStatus
from proofmarket.db.market_book import MarketBook
from proofmarket.intake.callback_terms import DEFAULT_RULE, CallbackRule
from proofmarket.intake.escrow_batch import BatchedEscrow
from proofmarket.intake.rails import ESCROW_RAIL, EscrowRail, chain_ticket
from proofmarket.intake.reorgs import CLOSED, OPEN
from proofmarket.intake.watcher import MAX_ATTEMPTS, ChainWatcher
from proofmarket.onchain import Market
from proofmarket.onchain.results import settlement_summary
from proofmarket.onchain.validations import record_escrow
from proofmarket.systems import parse_bundle
from proofmarket.systems.attested import instances
from proofmarket.systems.attested.service import GenerateRequest
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.commitment import input_commitment
from proofmarket.systems.port import Bundle, Execution
from proofmarket.systems.registry import ATTESTED_SYSTEM
from proofmarket.systems.workspace import Workspace

__all__ = ["CLOSED", "MAX_ATTEMPTS", "OPEN", "EscrowService"]

if TYPE_CHECKING:
    from proofmarket.calls.service import CallService


class Answer(NamedTuple):
    settlement: Fulfilment
    bundle_cid: str
    output: Any
    attested: bool
    owner: str | None = None  # the model's owner the request snapshotted (credited its share)


class EscrowService(BatchedEscrow, ChainWatcher[InferenceRequest]):
    """Consumer side (``get``, ``post_input``) and watcher side (``scan``, ``work``, ``recover``, thread)."""

    kind, noun, contract = "escrow", "escrow request", "InferenceMarket"
    closing_events = ("RequestFulfilled", "ProofRejected", "RequestRefunded")

    def __init__(self, market: Market, repo: EscrowRepo, served: Callable[[], Iterable[str]], *,
                 confirmations: int | None = None, poll_s: float = 2.0, batch_size: int = 2_000,
                 proof_timeout_s: float | None = None, owner: str | None = None, calls: CallService | None = None,
                 callbacks: CallbackRule = DEFAULT_RULE) -> None:
        super().__init__(market, repo, served, market.market, confirmations=confirmations, poll_s=poll_s,
                         batch_size=batch_size, owner=owner)
        self.callbacks = callbacks
        self.metrics: EscrowMetrics | None = None
        self.proof_timeout_s = proof_timeout_s
        self.calls = calls  # the node's CallService: answers are calls of the escrow rail (None: proved here)
        self._started: dict[int, float] = {}  # row id -> when its answer began (the fulfil-time metric)
        self._settled_counts: dict[int, int] = {}  # row id -> requests its call's settlement closed (settle_answer)
        self.payouts = MarketBook(repo.book, self.chain_id, self.address, self._parties, market.market.splitter_for,
                                  self._model_of)

    @classmethod
    def for_node(cls, settings: Settings, db: Database, workspace: Workspace,
                 registry: CollectorRegistry | None = None,
                 market: Market | None = None, **options: Any) -> EscrowService | None:
        """The node's escrow service, or None when the setting is off or (auto) no market is deployed."""
        return super().for_node(settings, db, workspace, registry, market,
                                proof_timeout_s=settings.queue.proof_timeout_s, **options)

    def with_metrics(self, registry: CollectorRegistry | None) -> EscrowService:
        if registry is not None:
            self.metrics = EscrowMetrics(registry)
            self.metrics.track_open(self._open_count)
        return self

    def _book(self, event: ChainEvent) -> None:
        if event.event == "RequestFulfilled" and \
                int(event.args["requestId"]) in self.market.market.authorized_in(event.tx_hash):
            return  # an x402 proven call: its rail booked the capture (payments/proven), once
        self.payouts.record(event)

    def _parties(self, request_id: int) -> tuple[str, str]:
        """(consumer, owner) of an on-chain request, as it snapshotted them."""
        onchain = self._read(request_id)
        return onchain.consumer, onchain.terms.owner if onchain.terms is not None else ""

    def _model_of(self, request_id: int) -> str | None:
        row = self.repo.get(self.chain_id, self.address, request_id)
        return row.model_id if row is not None else None

    # --- consumers ----------------------------------------------------------------------------
    def post_input(self, request_id: int, inputs_doc: Any, salt: list[int] | None = None) -> EscrowRequestRow:
        """Accept the consumer's input if it opens the on-chain commitment; the watcher then proves it."""
        row = self.get(request_id)
        self._refuse_closed(row)
        if self.market.attested_manifest(row.model_id) is not None:  # a generate request
            if self.market.deployment.court is not None:
                raise UseCourt(f"model {row.model_id} is attested: its requests are escrowed on the AttestationCourt "
                               f"({self.market.deployment.court}); refund request {request_id} after its deadline",
                               request_id=request_id)
            inputs_doc = instances.escrow_request(inputs_doc)
            self.market.workspace.attested.runtime.check(row.model_id, GenerateRequest.of(inputs_doc))
            opened, form = instances.opening(inputs_doc, row.commitment)
            stored = {"inputs": inputs_doc, "salt": None, **({"form": form} if form else {})}
            return self._take_input(row, opened, stored)
        opened = self._proven_commitment(row, inputs_doc, salt)
        return self._take_input(row, opened, {"inputs": inputs_doc, "salt": salt})

    def _proven_commitment(self, row: EscrowRequestRow, inputs_doc: Any, salt: list[int] | None) -> str:
        manifest, info = self.market.first_circuit(row.model_id)  # a sliced model: its first slice's input
        arrays = models.parse_inputs(inputs_doc, info)
        if manifest.salt_elements and salt is None:
            raise InputMismatch(f"model {row.model_id} hashes its input with a salt: post the salt of the "
                                "commitment with the input", request_id=row.request_id)
        try:
            return input_commitment(self.market.workspace.store, manifest, arrays, salt).commitment
        except UsageError as exc:
            raise InputMismatch(f"the input does not open request {row.request_id}'s commitment: {exc.message}",
                                request_id=row.request_id) from exc

    # --- the watcher --------------------------------------------------------------------------
    def work(self) -> int:
        """Prove and fulfil every request whose input was received. Returns how many were settled."""
        done = 0
        with self._work_lock:
            self._expire_unanswered()
            final = self._follow_confirming()
            if final and self.metrics is not None:
                self.metrics.closed.labels("fulfilled").inc(final)
            done += final
            rows = list(self.repo.with_status(self.chain_id, self.address, EscrowStatus.INPUT_RECEIVED))
            claimed = self._together(rows)  # requests of one model waiting together: queued at once (one proof)
            for row in rows:
                if self._stop.is_set():
                    break
                if row.id in claimed or self.repo.claim(row.id):
                    done += self._fulfil(self._claimed(row))
        return done

    def rail(self) -> EscrowRail:
        return EscrowRail(self)

    def recover(self) -> None:
        """At start: settle from the chain what a previous run left ``proving``."""
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.PROVING):
            if self._record_closed(row, self._read(row.request_id)) is None:
                self.repo.release(row.id)
                self.log.info("escrow request %s was being proved when the node stopped: proving it again",
                              row.request_id)

    # --- internals ----------------------------------------------------------------------------
    def _read(self, request_id: int) -> InferenceRequest:
        return self.market.market.get_request(request_id)

    def _open_onchain(self, request_id: int) -> InferenceRequest | None:
        onchain = self._read(request_id)
        return None if onchain.status is RequestStatus.NONE else onchain

    def _record_closed(self, row: EscrowRequestRow, onchain: InferenceRequest) -> str | None:
        """Record a request that can no longer be fulfilled by us; None when it is still open."""
        me = self.market.accounts.prover.address.lower()
        if onchain.status is RequestStatus.REJECTED and (onchain.prover or "").lower() == me:
            self._close_failed(row, "proof_rejected", f"request {row.request_id}: the verifier rejected our proof "
                               "(the consumer was refunded and our stake slashed)")
            return "rejected"
        if onchain.status is RequestStatus.FULFILLED:
            if (onchain.prover or "").lower() == me:
                settlement = {"request_id": row.request_id, "status": onchain.status.name, "prover": onchain.prover,
                              "output_hash": "0x" + onchain.output_hash.hex() if onchain.output_hash else None,
                              "recovered": True}
                fulfil_tx = self._fulfil_tx(row.request_id, row.block_number or 0) if self.confirmations else None
                if fulfil_tx is not None and row.status == EscrowStatus.PROVING and self.repo.confirming(
                        row.id, fulfil_tx=fulfil_tx, settlement=settlement):
                    return "confirming"  # found on chain at restart: final once as deep as any answer
                self.repo.fulfilled(row.id, fulfil_tx=fulfil_tx, settlement=settlement)
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

    def _fulfil_tx(self, request_id: int, from_block: int) -> str | None:
        """The transaction that fulfilled ``request_id`` (its RequestFulfilled event), None when not found."""
        try:
            logs = self.market.market.contract.events.RequestFulfilled().get_logs(
                from_block=max(0, from_block), argument_filters={"requestId": request_id})
        except Exception:  # noqa: BLE001 (the RPC: recorded without the depth wait, as before)
            self.log.warning("escrow request %s: its fulfilment's transaction could not be read", request_id)
            return None
        return "0x" + bytes(logs[-1]["transactionHash"]).hex().removeprefix("0x") if logs else None

    def _open_again(self, onchain: InferenceRequest) -> bool:
        return onchain.status in (RequestStatus.OPEN, RequestStatus.ACCEPTED)

    def _settled_by_us(self, onchain: InferenceRequest) -> bool:
        return onchain.status is RequestStatus.FULFILLED and \
            (onchain.prover or "").lower() == self.market.accounts.prover.address.lower()

    def _confirmed_settlement(self, row: EscrowRequestRow, settlement: dict[str, Any]) -> dict[str, Any]:
        """Proven work gets its ERC-8004 validation record once its fulfil is final."""
        if row.bundle_cid and row.fulfil_tx and self.market.attested_manifest(row.model_id) is None:
            settlement["validation"] = self._validation(row.request_id, row.bundle_cid, row.fulfil_tx)
        return settlement

    def _close_failed(self, row: EscrowRequestRow, code: str, message: str) -> bool:
        closed = super()._close_failed(row, code, message)
        if closed and self.metrics is not None:
            self.metrics.closed.labels("failed").inc()
            self.metrics.failures.labels(code).inc()
        return closed

    def _open_count(self) -> float:
        try:
            return float(self.repo.count_with_status(self.chain_id, self.address, *OPEN))
        except Exception:  # a scrape must not fail because the database hiccuped
            self.log.warning("could not count the open escrow requests", exc_info=True)
            return float("nan")

    def _fulfil(self, row: EscrowRequestRow) -> int:
        self._started[row.id] = time.perf_counter()
        answer = self._attempt(row, lambda: self._answer(row))
        if not isinstance(answer, Answer):  # settled as a call (or closed): counted there
            self._started.pop(row.id, None)
            return answer or 0
        return self._record_answer(row, answer)

    def _record_answer(self, row: EscrowRequestRow, answer: Answer) -> int:
        """Record a submitted answer (fulfilled, confirming, or rejected on chain): 1 when the request is closed now."""
        request_id = row.request_id
        started = self._started.pop(row.id, time.perf_counter())
        settlement, bundle_cid = answer.settlement, answer.bundle_cid
        summary = {**settlement_summary(settlement), "bundle_cid": bundle_cid, "output": answer.output,
                   "owner": answer.owner}
        if not answer.attested and self.confirmations == 0:  # proven work: an ERC-8004 validation record,
            # answered by the ZkValidator (with confirmations: once the fulfil is final)
            summary["validation"] = self._validation(request_id, bundle_cid, settlement.tx.tx_hash)
        if not settlement.valid:  # the verifier said no: refunded and slashed, never shown as fulfilled
            self.log.error("escrow request %s: proof rejected on chain in tx %s", request_id, settlement.tx.tx_hash)
            if self.confirmations and self.repo.confirming(row.id, fulfil_tx=settlement.tx.tx_hash,
                                                           settlement={**summary, "rejected": True}):
                return 0  # closed as rejected once the rejection is as deep as any outcome (a reorg may undo it)
            self._close_failed(row, "proof_rejected", f"request {request_id}: the verifier rejected the proof in "
                               f"tx {settlement.tx.tx_hash} (the consumer was refunded)")
            return 1
        confirming = self._answered(row, settlement.tx.tx_hash, summary)
        if self.metrics is not None:
            self.metrics.fulfil.observe(time.perf_counter() - started)
            if not confirming:
                self.metrics.closed.labels(settlement.status.name.lower()).inc()
        if confirming:  # said by _answered
            return 0
        self.log.info("escrow request %s %s in tx %s", request_id, settlement.status.name.lower(),
                      settlement.tx.tx_hash)
        return 1

    def _answer(self, row: EscrowRequestRow) -> Answer | int:
        """Answer a claimed request: in a node, as a call of the escrow rail (run by the engine, fulfilled by the
        call settler: how many requests it closed); outside one, proved (or generated) and submitted here (its
        answer). 0 when it was closed on chain meanwhile."""
        request_id = row.request_id
        with self._shared_lock:  # a shared proof's settlement under way is recorded first, never read as closed
            if row.id in self._settled_counts:  # settled with others by the one fulfillBatch of a shared proof
                return self._settled_counts.pop(row.id)
            onchain = self._read(request_id)
            if self._record_closed(row, onchain) is not None:
                return 0
        self.market.check_entry(row.model_id, onchain.model_key)  # the listing is the model we prove
        callback = self.market.market.callback_of(request_id)  # a consumer contract's callback: our gas pays it
        refused = self.callbacks.refusal(callback.gas, callback.tip, f"request {request_id}")
        if refused is not None:
            self._close_failed(row, refused.code, f"{refused.message}; the consumer takes its escrow back after the "
                               "deadline")
            return 0
        self.market.claim(onchain)  # only the claimer can fulfil: a copied fulfil cannot take our work
        doc = row.inputs or {}
        attested = self.market.attested_manifest(row.model_id) is not None
        if attested and self.market.deployment.court is not None:
            self._close_failed(row, UseCourt.code, f"request {request_id}: attested requests are answered on "
                               "the AttestationCourt (refund this one after its deadline)")
            return 0
        if self.calls is not None:
            return self._as_call(row, doc, attested, self.market.settles_batched(row.model_id, onchain))
        if attested:  # signed by the prover account the model's AttestationVerifier names
            bundle, bundle_cid = self.market.generate_attested(row.model_id, doc.get("inputs"))
        elif row.bundle_cid is not None:  # proved before (a fulfil that left the chain, a failed send): the same
            bundle, bundle_cid = self._stored(row.bundle_cid)
        else:
            proved = self.market.workspace.prover.prove(row.model_id, doc.get("inputs"), self.proof_timeout_s,
                                                        salt=doc.get("salt"))
            bundle, bundle_cid = proved.bundle, proved.bundle_cid
        return self._submit(row, bundle, bundle_cid)

    def _as_call(self, row: EscrowRequestRow, doc: dict[str, Any], attested: bool, batch: bool) -> int:
        """The request as a call of the escrow rail (one per attempt), run by the node's engine (a proof, ``batch``:
        maybe shared with other escrow calls; an attested generation; a bundle proved before, only settled) and
        fulfilled by the call settler (``settle_answer``). How many requests it closed."""
        ticket = chain_ticket(ESCROW_RAIL, self.chain_id, self.address, row)
        calls, key = self._calls(), self._job_key(row)
        found = calls.repo.by_idempotency_key(key)  # this attempt's call, queued beside others
        if found is not None:
            job_id = found.id
        elif attested:
            job_id = calls.submit_request(row.model_id, dict(doc.get("inputs") or {}), key=key, ticket=ticket,
                                          system=ATTESTED_SYSTEM, rail=self.kind).id
        elif row.bundle_cid is not None:  # proved before (a fulfil that left the chain, a failed send): the same
            bundle, cid = self._stored(row.bundle_cid)
            output = bundle.to_doc().get("output") or {}
            job_id = calls.submit_request(row.model_id, {"inputs": doc.get("inputs"), "salt": doc.get("salt")},
                                          key=key, ticket=ticket, system=self._system(row.model_id), rail=self.kind,
                                          answered=Execution(cid, bundle, {"output": output.get("values")})).id
        else:
            job_id = self._submit_job(row, batch=batch, ticket=ticket)
        self._wait_call(row, job_id)  # a call failed before the request was answered fails this attempt
        return int(self._settled_counts.pop(row.id, 0))

    def settle_answer(self, row: EscrowRequestRow, bundle_doc: dict[str, Any], bundle_cid: str) -> int:
        """The escrow rail's settlement of a call (``EscrowRail.settle``, on the call settler's thread): submit the
        call's answer for ``row`` (a shared proof: with the other requests it answers, ``_settle_shared``) and record
        it. How many of ``row``'s requests it closed."""
        bundle = parse_bundle(bundle_doc)
        if isinstance(bundle, ProofBundle) and bundle.batch is not None:
            return self._settle_shared(row, bundle, bundle_cid)
        answer = self._submit(row, bundle, bundle_cid)
        closed = self._record_answer(row, answer) if isinstance(answer, Answer) else answer
        self._settled_counts[row.id] = closed
        return closed

    def _submit(self, row: EscrowRequestRow, bundle: Bundle, bundle_cid: str) -> Answer | int:
        """Submit a claimed request's answer (``fulfill``): the answer, or how many requests were closed on chain
        meanwhile (0, or 1 when our own transaction went through after all)."""
        request_id = row.request_id
        self.repo.proved(row.id, bundle_cid)
        # proving takes time: someone may have settled it meanwhile (the contract would refuse anyway)
        onchain = self._read(request_id)
        if self._record_closed(row, onchain) is not None:
            return 0
        doc = row.inputs or {}
        attested = self.market.attested_manifest(row.model_id) is not None
        try:
            settlement = self.market.submit_attestation(request_id, bundle, doc.get("inputs"),
                                                        form=int(doc.get("form") or 0)) if attested \
                else self.market.submit_proof(request_id,
                                              bundle if isinstance(bundle, ProofBundle) else bundle.to_doc())
        except ChainError:
            if self._record_closed(row, self._read(request_id)) is not None:
                return 1  # our transaction went through after all
            raise
        output = bundle.output.text if attested else bundle.output.values
        return Answer(settlement, bundle_cid, output, attested, onchain.terms.owner if onchain.terms else None)

    def _stored(self, bundle_cid: str) -> tuple[Bundle, str]:
        return parse_bundle(self.market.workspace.store.get_json(bundle_cid)), bundle_cid

    def _validation(self, request_id: int, bundle_cid: str, fulfil_tx: str) -> dict[str, Any] | None:
        """Record the settled request on the ERC-8004 ValidationRegistry (never fails the request)."""
        try:
            return record_escrow(self.market, request_id, bundle_cid, fulfil_tx)
        except Exception:
            self.log.warning("escrow request %s: no ERC-8004 validation record", request_id, exc_info=True)
            return None
