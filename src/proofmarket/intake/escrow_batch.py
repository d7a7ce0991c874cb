"""Escrow requests waiting together, settled together: batched settlement of the escrow rail.

When several received requests of one model can share a proof (the chain settles them in any of the model's batch
circuits, ``ProverRole.settles_batched``), the watcher claims them all and queues all their calls at once (the
node's queue proves calls of one model that wait together in one batch proof, ``calls/batch_queue.py``); it sends
nothing itself. The call settler settles each call through the escrow rail (``EscrowRail.settle``): the first call
of a shared proof to be settled takes every proved call of the same proof whose request is still being answered and
sends one ``fulfillBatch`` for all of them (one verification's gas); the others' settlements then read their
requests fulfilled. Each request's answer is recorded as one proven alone is (``_record_answer``: validated,
counted). The engine records every call of a batch before it hands any to the settler (``CallRunner.run_batch``).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from proofmarket.chain.types import InferenceRequest, RequestStatus
from proofmarket.core.errors import ChainError
from proofmarket.db import CallStatus, EscrowRepo, EscrowRequestRow, EscrowStatus
from proofmarket.intake.callback_terms import CallbackRule
from proofmarket.intake.rails import ESCROW_RAIL, chain_ticket
from proofmarket.onchain import Market
from proofmarket.payments.tickets import Ticket
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ids import PROVEN_SYSTEM, SLICED_SYSTEM

if TYPE_CHECKING:
    from proofmarket.calls.service import CallService


class BatchedEscrow:
    """A mixin of ``EscrowService`` (its repo, market, jobs, log and ``_answer`` path)."""

    repo: EscrowRepo
    market: Market
    calls: CallService | None
    log: logging.Logger
    _claimed: Callable[[EscrowRequestRow], EscrowRequestRow]  # ChainWatcher's
    _record_closed: Callable[[EscrowRequestRow, InferenceRequest], str | None]  # EscrowService's
    _record_answer: Callable[[EscrowRequestRow, Any], int]
    _settled_counts: dict[int, int]
    kind: ClassVar[str]
    chain_id: int
    address: str
    proof_timeout_s: float | None
    callbacks: CallbackRule

    def _system(self, model_id: str) -> str:
        """The proof system a proven request's call runs on: EZKL's, or the linked slices' of a sliced model."""
        return SLICED_SYSTEM if self.market.sliced_manifest(model_id) is not None else PROVEN_SYSTEM

    def _together(self, rows: list[EscrowRequestRow]) -> set[int]:
        """Claim and queue together the rows that can share proofs (2+ of one model): the ids claimed here (the
        watcher's usual path then answers each, finding its call queued)."""
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
                self._queue_together(mine)
            except Exception as exc:  # noqa: BLE001 (each request is then answered alone, its call found again)
                self.log.warning("escrow requests %s of %s: not queued together (%s); answering them one by one",
                                 [r.request_id for r in mine], model_id, exc)
        return claimed

    def _callback_taken(self, request_id: int) -> bool:
        """The request's callback (if any) is one this node answers (``CallbackRule``), read only when asked."""
        callback = self.market.market.callback_of(request_id)
        return self.callbacks.refusal(callback.gas, callback.tip, "") is None

    def _queue_together(self, rows: list[EscrowRequestRow]) -> None:
        """Claim on chain and queue the calls of the rows still open that settle batched, all before waiting for
        any (a request refused here, e.g. a callback the node does not take, is left to the usual path)."""
        open_rows, checked = [], set()
        for row in rows:
            onchain = self.market.market.get_request(row.request_id)
            if onchain.status in (RequestStatus.OPEN, RequestStatus.ACCEPTED) and \
                    self.market.settles_batched(row.model_id, onchain) and self._callback_taken(row.request_id):
                if onchain.model_key not in checked:  # one listing, checked once for all its requests
                    self.market.check_entry(row.model_id, onchain.model_key)
                    checked.add(onchain.model_key)
                open_rows.append((row, onchain))
        if len(open_rows) < 2:
            return
        for row, onchain in open_rows:
            self.market.claim(onchain)
            self._submit_job(row, batch=True, ticket=chain_ticket(ESCROW_RAIL, self.chain_id, self.address, row))

    def _settle_shared(self, row: EscrowRequestRow, bundle: ProofBundle, bundle_cid: str) -> int:
        """The escrow rail's settlement of a call whose proof is shared (``bundle.batch``): one ``fulfillBatch`` for
        it and every proved call of the same proof whose request is still being answered; each answer recorded.
        How many of the requests it closed are ``row``'s (0 or 1)."""
        from proofmarket.intake.escrow import Answer

        with self._shared_lock:  # two settle threads never send the same requests twice
            fresh = self.repo.get(self.chain_id, self.address, row.request_id)
            if fresh is None or fresh.status != EscrowStatus.PROVING or fresh.attempts != row.attempts:
                return 0  # settled with another call of its proof meanwhile, or another attempt's now
            group, open_ = [(fresh, bundle, bundle_cid), *self._siblings(fresh, bundle)], []
            for member, shared, cid in group:
                self.repo.proved(member.id, cid)
                onchain = self.market.market.get_request(member.request_id)
                if self._record_closed(member, onchain) is None:  # closed meanwhile: recorded as it is
                    open_.append((member, onchain, shared, cid))
            if not open_:
                return 0
            slots = {member.request_id: shared.batch.slot for member, _, shared, _ in open_ if shared.batch}
            try:
                settled = self.market.submit_batch(slots, bundle)
            except ChainError:
                if all(self._record_closed(m, self.market.market.get_request(m.request_id)) is not None
                       for m, *_ in open_):
                    return 1  # our transaction went through after all
                raise
            self.log.info("escrow requests %s settled by one fulfillBatch in tx %s", list(slots),
                          next(iter(settled.values())).tx.tx_hash)
            for member, onchain, shared, cid in open_:
                owner = onchain.terms.owner if onchain.terms else None
                answer = Answer(settled[member.request_id], cid, shared.output.values, False, owner)
                self._settled_counts[member.id] = self._record_answer(member, answer)
            return self._settled_counts.get(fresh.id, 0)

    def _siblings(self, row: EscrowRequestRow, bundle: ProofBundle) -> list[tuple[EscrowRequestRow, ProofBundle, str]]:
        """The other requests being answered whose calls are proved by the same shared proof as ``bundle``."""
        found = []
        for other in self.repo.with_status(self.chain_id, self.address, EscrowStatus.PROVING):
            if other.id == row.id or other.model_id != row.model_id:
                continue
            call = self._calls().repo.by_idempotency_key(self._job_key(other))
            if call is None or call.status != CallStatus.PROVED or call.bundle_cid is None:
                continue
            shared = ProofBundle.parse(self.market.workspace.store.get_json(call.bundle_cid))
            if shared.batch is not None and shared.proof.hex == bundle.proof.hex:
                found.append((other, shared, call.bundle_cid))
        return found

    @property
    def _shared_lock(self) -> threading.Lock:
        lock: threading.Lock = self.__dict__.setdefault("_shared_settle_lock", threading.Lock())
        return lock

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
