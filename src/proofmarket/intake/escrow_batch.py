"""Escrow requests waiting together, settled together: the watcher's side of batched settlement.

When several received requests of one model can share a proof (the chain settles them in any of the model's batch
circuits, ``ProverRole.settles_batched``), the watcher claims them all, queues all their proofs at once (the node's
queue proves calls of one model that wait together in one batch proof, ``calls/batch_queue.py``), and settles the
requests that share a proof with one ``fulfillBatch``: one verification's gas for all of them. Each request's
answer then goes through the watcher's usual path (``_fulfil``: recorded, validated, metrics), as if proven alone.
Anything that goes wrong here leaves the requests to that path: their jobs are found again by key, their proofs
are the same, and a batch that did reach the chain is read from it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from proofmarket.chain.types import InferenceRequest, RequestStatus
from proofmarket.core.errors import ProofTimeout, from_code
from proofmarket.db import CallRow, CallStatus, EscrowRepo, EscrowRequestRow
from proofmarket.intake.callback_terms import CallbackRule
from proofmarket.intake.rails import ESCROW_RAIL, chain_ticket
from proofmarket.onchain import Market
from proofmarket.payments.tickets import Ticket
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ids import PROVEN_SYSTEM, SLICED_SYSTEM

if TYPE_CHECKING:
    from proofmarket.calls.service import CallService


class _Proved(NamedTuple):
    row: EscrowRequestRow
    onchain: InferenceRequest
    bundle: ProofBundle
    bundle_cid: str


class BatchedEscrow:
    """A mixin of ``EscrowService`` (its repo, market, jobs, log and ``_answer`` path)."""

    repo: EscrowRepo
    market: Market
    calls: CallService | None
    log: logging.Logger
    _claimed: Callable[[EscrowRequestRow], EscrowRequestRow]  # ChainWatcher's
    kind: ClassVar[str]
    chain_id: int
    address: str
    proof_timeout_s: float | None
    callbacks: CallbackRule

    def _system(self, model_id: str) -> str:
        """The proof system a proven request's call runs on: EZKL's, or the linked slices' of a sliced model."""
        return SLICED_SYSTEM if self.market.sliced_manifest(model_id) is not None else PROVEN_SYSTEM

    def _together(self, rows: list[EscrowRequestRow]) -> set[int]:
        """Claim and answer together the rows that can share proofs (2+ of one model); the ids claimed here (their
        answers, when settled together, wait in ``_ready`` for ``_answer``)."""
        if self.calls is None:
            return set()
        by_model: dict[str, list[EscrowRequestRow]] = defaultdict(list)
        for row in rows:
            by_model[row.model_id].append(row)
        claimed: set[int] = set()
        for model_id, group in by_model.items():
            mine: list[EscrowRequestRow] = []
            try:
                if len(group) < 2 or self.market.attested_manifest(model_id) is not None:
                    continue
                for row in group:
                    if self.repo.claim(row.id):
                        claimed.add(row.id)  # the watcher's usual path answers it, whatever happens here
                        mine.append(self._claimed(row))
                self._settle_together(mine)
            except Exception as exc:  # noqa: BLE001 (each request is then answered alone, its proof found again)
                self.log.warning("escrow requests %s of %s: not settled together (%s); answering them one by one",
                                 [r.request_id for r in mine], model_id, exc)
        return claimed

    def _callback_taken(self, request_id: int) -> bool:
        """The request's callback (if any) is one this node answers (``CallbackRule``), read only when asked."""
        callback = self.market.market.callback_of(request_id)
        return self.callbacks.refusal(callback.gas, callback.tip, "") is None

    def _settle_together(self, rows: list[EscrowRequestRow]) -> None:
        open_rows, checked = [], set()
        for row in rows:
            onchain = self.market.market.get_request(row.request_id)
            # a callback the node does not take (over its gas limit, under its tip) is left to the usual path, which
            # refuses it (callback_gas_over_limit, callback_tip_too_low)
            if onchain.status in (RequestStatus.OPEN, RequestStatus.ACCEPTED) and \
                    self.market.settles_batched(row.model_id, onchain) and self._callback_taken(row.request_id):
                if onchain.model_key not in checked:  # one listing, checked once for all its requests
                    self.market.check_entry(row.model_id, onchain.model_key)
                    checked.add(onchain.model_key)
                open_rows.append((row, onchain))
        if len(open_rows) < 2:
            return
        for _, onchain in open_rows:
            self.market.claim(onchain)
        jobs = [(row, onchain, self._submit_job(row, batch=True, ticket=chain_ticket(
            ESCROW_RAIL, self.chain_id, self.address, row, together=True))) for row, onchain in open_rows]
        proved = [_Proved(row, onchain, *self._proof_of(self._wait_call(row, job_id))) for row, onchain, job_id in jobs]
        shared: dict[str, list[_Proved]] = defaultdict(list)
        for p in proved:
            self.repo.proved(p.row.id, p.bundle_cid)
            if p.bundle.batch is not None:
                shared[p.bundle.proof.hex].append(p)
        for group in shared.values():
            if len(group) > 1:
                self._fulfil_batch(group)

    def _fulfil_batch(self, group: list[_Proved]) -> None:
        from proofmarket.intake.escrow import Answer

        slots = {p.row.request_id: p.bundle.batch.slot for p in group if p.bundle.batch is not None}
        settled = self.market.submit_batch(slots, group[0].bundle)
        self.log.info("escrow requests %s settled by one fulfillBatch in tx %s", list(slots),
                      next(iter(settled.values())).tx.tx_hash)
        for p in group:
            owner = p.onchain.terms.owner if p.onchain.terms else None
            self._ready[p.row.id] = Answer(settled[p.row.request_id], p.bundle_cid, p.bundle.output.values, False,
                                           owner)

    @property
    def _ready(self) -> dict[int, Any]:
        ready: dict[int, Any] = self.__dict__.setdefault("_ready_answers", {})
        return ready

    def _job_key(self, row: EscrowRequestRow) -> str:
        """The key of the request's call of this attempt: its ticket's nonce (one call per attempt)."""
        return chain_ticket(ESCROW_RAIL, self.chain_id, self.address, row).nonce

    def _calls(self) -> CallService:
        assert self.calls is not None, "a batched escrow answer is a call of the node's queue"
        return self.calls

    def _submit_job(self, row: EscrowRequestRow, *, batch: bool, ticket: Ticket | None = None) -> str:
        """The request's proof as a call of the node's queue (found again by its key: one per attempt). ``ticket``:
        the call is the escrow rail's, fulfilled by the call settler (None: settled here, by one fulfillBatch)."""
        doc = row.inputs or {}
        job, _ = self._calls().submit_prove(row.model_id, doc.get("inputs"), key=self._job_key(row),
                                            salt=doc.get("salt"), system=self._system(row.model_id),
                                            rail=self.kind, batch=batch,
                                            client="escrow", ticket=ticket)  # input and answer are public on chain
        return str(job.id)

    def _wait_call(self, row: EscrowRequestRow, job_id: str) -> CallRow:
        """Wait for the request's call to be done with (final, or its fulfil mined and settling); ProofTimeout when
        it is still running after the proof timeout and two minutes."""
        wait = (self.proof_timeout_s or 600.0) + 120.0
        deadline, watched = time.monotonic() + wait, self._calls().queue.watch(job_id)
        try:
            while True:  # a watch resolves once the call is final (settling: the local engine's, not Celery's)
                with contextlib.suppress(TimeoutError):  # still running: looked at below
                    watched.result(max(0.0, min(1.0, deadline - time.monotonic())))
                done = self._calls().get(job_id)
                if done.is_final or done.status == CallStatus.SETTLING or time.monotonic() >= deadline:
                    break
        finally:
            watched.cancel()  # a polling watch (Celery) stops polling
        if not done.is_final and done.status != CallStatus.SETTLING:
            late = ProofTimeout(f"escrow request {row.request_id}: its call {done.id} is still {done.status} "
                                f"after {wait:.0f} s", job_id=done.id)
            self._calls().fail_call(done.id, late.code, late.message)  # a proof that comes later settles nothing
            raise late
        return done

    def _proof_of(self, call: CallRow) -> tuple[ProofBundle, str]:
        """A proved call's bundle and CID (its error, when it failed)."""
        if call.status == CallStatus.FAILED or call.bundle_cid is None:
            raise from_code(call.error_code or "proving_failed", call.error_message or "the proof failed",
                            {"job_id": call.id})
        return ProofBundle.parse(self.market.workspace.store.get_json(call.bundle_cid)), call.bundle_cid
