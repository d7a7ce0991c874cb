"""The court's on-chain steps for a node's answers (a mixin of ``CourtService``): commit, then follow each committed
request through the court until it is paid, slashed or refunded.

    commit_answer   the court rail's settle (a settle thread): a generated answer, with every other one waiting,
                    committed in one transaction (``commit``, or ``commitBatch`` under one Merkle root)
    advance         the court rail's follow (the settler's passes): publish a bundle challenged as withheld,
                    finalize after the window, resolve a challenge after its vote; each new status recorded with the
                    book entries of its move (``EscrowRepo.court_moved``) and, once settled, its ERC-8004 validation
    settle          the watcher's pass: ``advance`` for the committed requests no settling call follows (a watcher
                    outside a node)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from eth_account.signers.local import LocalAccount
from prometheus_client import Counter
from web3.logs import DISCARD

from proofmarket.chain.client import TxResult
from proofmarket.chain.contracts import UsdcToken
from proofmarket.chain.court import (
    MAX_PUBLISHED_BYTES,
    SETTLED,
    AttestationCourt,
    Commitment,
    CourtRequest,
    CourtValidator,
)
from proofmarket.core.errors import ContractReverted, CourtBundleTooLarge, ProofMarketError
from proofmarket.db import CallRow, CallStatus, CourtState, EscrowRepo, EscrowRequestRow, EscrowStatus
from proofmarket.db.book import Accounts, Transfer
from proofmarket.intake.court_delivery import CourtDelivery
from proofmarket.intake.rails import COURT_RAIL, chain_ticket
from proofmarket.onchain import Market
from proofmarket.onchain.validations import record_court
from proofmarket.store.cid import digest_of
from proofmarket.systems import parse_bundle
from proofmarket.systems.attested import instances

Ready = list[tuple[EscrowRequestRow, Commitment]]
T = TypeVar("T")

if TYPE_CHECKING:
    from proofmarket.calls.service import CallService


class CourtSteps:
    """A mixin of ``CourtService`` (its court, market, repo, calls, log and the watcher's attempt rules)."""

    court: AttestationCourt
    validator: CourtValidator | None
    delivery: CourtDelivery
    market: Market
    repo: EscrowRepo
    calls: CallService | None
    log: logging.Logger
    chain_id: int
    address: str
    batch_max: int
    confirmations: int
    committed: Counter | None
    settled: Counter | None
    status_hooks: list[Callable[[str, int, str], None]]
    _commit_lock: threading.Lock
    _attempt: Callable[..., Any]  # ChainWatcher's
    _answered: Callable[..., bool]  # Reorgs'
    _failed_attempt: Callable[..., None]
    _record_closed: Callable[[EscrowRequestRow, CourtRequest], str | None]
    _transient: Callable[[ProofMarketError], bool]

    @property
    def node(self) -> LocalAccount:
        return self.market.accounts.prover

    def commit_answer(self, row: EscrowRequestRow, bundle_cid: str) -> None:
        """Commit a generated answer (the court rail's ``settle``, on a settle thread): with every other request
        whose call was generated and waits for its commitment (up to ``batch_max``), in one ``commitBatch`` under one
        Merkle root; the others' settlements then find their requests committed. A request's answer the court
        could not take fails its attempt (``_attempt``: tried again, or failed with its code)."""
        with self._commit_lock:
            fresh = self.repo.get(self.chain_id, self.address, row.request_id)
            if fresh is None or fresh.status != EscrowStatus.PROVING or fresh.attempts != row.attempts:
                return  # committed with another one's, or closed, meanwhile
            ready: Ready = [(fresh, self._commitment(fresh, bundle_cid))]
            for other, cid in self._generated_waiting(fresh.id):
                made = self._attempt(other, partial(self._commitment, other, cid))
                if made is not None:
                    ready.append((other, made))
            self._commit(ready)

    def commit_deferred(self, row: EscrowRequestRow, bundle_cid: str) -> None:
        """``commit_answer`` for an answer left to be committed with others (the rail's ``follow``): a failure fails
        the request's attempt here (tried again, or failed with its code), since no watcher waits for its call."""
        self._attempt(row, partial(self.commit_answer, row, bundle_cid))

    def others_generating(self, row: EscrowRequestRow) -> bool:
        """Whether another request of this court is being generated (its call queued or running): ``row``'s answer
        then waits to be committed with it (the last one generated commits them all)."""
        return any(call is not None and call.status in (CallStatus.QUEUED, CallStatus.RUNNING)
                   for _, call in self._answering(row.id))

    def _answering(self, besides: int) -> list[tuple[EscrowRequestRow, CallRow | None]]:
        """The other requests being answered (claimed, not committed), each with its attempt's call."""
        if self.calls is None:
            return []
        calls, rows = self.calls.repo, self.repo.with_status(self.chain_id, self.address, EscrowStatus.PROVING)
        return [(other, calls.by_idempotency_key(chain_ticket(COURT_RAIL, self.chain_id, self.address, other).nonce))
                for other in rows if other.id != besides]

    def _generated_waiting(self, besides: int) -> list[tuple[EscrowRequestRow, str]]:
        """The other requests being answered whose calls were generated and wait for their settlement (their
        bundles), at most ``batch_max - 1``."""
        found: list[tuple[EscrowRequestRow, str]] = []
        for other, call in self._answering(besides):
            if len(found) >= self.batch_max - 1:
                break
            if call is not None and call.status in (CallStatus.PROVED, CallStatus.SETTLING) and call.bundle_cid:
                found.append((other, call.bundle_cid))
        return found

    def _commitment(self, row: EscrowRequestRow, bundle_cid: str) -> Commitment:
        """What commits ``row``'s answer: its instances and its bundle's digest (a bundle over what the court's
        publish takes is refused: it could not be defended)."""
        size = self.market.workspace.store.path(bundle_cid).stat().st_size
        if size > MAX_PUBLISHED_BYTES:
            raise CourtBundleTooLarge(f"the bundle of court request {row.request_id} is {size} bytes, over the "
                                      f"{MAX_PUBLISHED_BYTES} bytes the court's publish takes: not committed (the "
                                      "consumer takes its money back after the deadline)", size=size,
                                      limit=MAX_PUBLISHED_BYTES)
        self.repo.proved(row.id, bundle_cid)
        doc = (row.inputs or {}).get("inputs")
        bundle: Any = parse_bundle(self.market.workspace.store.get_json(bundle_cid))  # an attested bundle
        form = int((row.inputs or {}).get("form") or 0)  # the canonical form the consumer's commitment was made in
        return Commitment(row.request_id, instances.instances_of(bundle, doc, form), digest_of(bundle_cid))

    def _commit(self, ready: Ready) -> int:
        try:
            tx = self._send_commit(ready)
        except ProofMarketError as exc:
            for row, _ in ready:  # a batch fails as one: each request is tried again, alone if need be
                fresh = self.repo.get(self.chain_id, self.address, row.request_id)
                if fresh is not None and self._record_closed(fresh, self.court.get_request(row.request_id)) is None:
                    self._failed_attempt(fresh, exc.code, exc.message, transient=self._transient(exc))
            self.batch_max = 1 if len(ready) > 1 else self.batch_max
            return 0
        committed = {int(e["requestId"]): int(e["windowEnd"]) for e in self.court.decode_events(tx, "Committed")}
        for row, c in ready:
            summary = {"request_id": c.request_id, "status": "COMMITTED", "tx_hash": tx.tx_hash,
                       "bundle_digest": "0x" + c.bundle_digest.hex(), "batch": len(ready)}
            self._answered(row, tx.tx_hash, summary, CourtState("committed", committed.get(c.request_id)))
        if self.committed is not None:
            self.committed.inc(len(ready))
        self.log.info("court: committed %d request(s) in tx %s", len(ready), tx.tx_hash)
        return len(ready)

    def _send_commit(self, ready: Ready) -> TxResult:
        """Commit ``ready`` (one request, or a batch under one Merkle root); a commitment refused because the
        node's stake fell below the minimum (it was slashed) is sent again once the stake is topped up."""
        try:
            return self._commit_tx(ready)
        except ContractReverted as exc:
            if exc.details.get("error") != "StakeTooLow":
                raise
        self.log.warning("court: the node's stake is below the court's minimum: staking again before committing")
        self.market.stake_court_node()
        return self._commit_tx(ready)

    def _commit_tx(self, ready: Ready) -> TxResult:
        if len(ready) == 1:
            _, c = ready[0]
            return self.court.commit(c.request_id, c.instances, self.node, c.bundle_digest)
        return self.court.commit_batch([c for _, c in ready], self.node)

    def _publish(self, row: EscrowRequestRow) -> None:
        """Answer an availability challenge: publish the committed bundle on chain (its sha256 is the commitment's
        digest), so every validator can judge it and the challenger takes its bond back."""
        if row.bundle_cid is None:
            self.log.error("court request %s: challenged as withheld but no bundle is stored", row.request_id)
            return
        self.court.publish(row.request_id, self.market.workspace.store.get(row.bundle_cid), self.node)
        self.log.warning("court request %s: challenged as withheld: bundle published on chain", row.request_id)

    def settle(self) -> int:
        """Move on the committed requests no call follows (a watcher outside a node; in a node the court rail's
        ``follow`` moves each call's request: ``advance``). Returns how many settled."""
        done = 0
        now = self.market.client.timestamp()
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.FULFILLED):
            if row.court_status not in SETTLED and not self._followed(row):
                done += self.advance(row, now)
        return done

    def _followed(self, row: EscrowRequestRow) -> bool:
        """Whether ``row``'s call is settling: its rail's ``follow`` moves it on."""
        if self.calls is None:
            return False
        call = self.calls.repo.by_idempotency_key(chain_ticket(COURT_RAIL, self.chain_id, self.address, row).nonce)
        return call is not None and call.status == CallStatus.SETTLING

    def advance(self, row: EscrowRequestRow, now: int | None = None) -> bool:
        """One look at a committed request: publish its bundle when challenged as withheld, finalize it once its
        window closed, resolve a challenge once its vote ended; a new status is recorded with the book entries of
        its move (the court's payment, a delivered result's tip) and its ERC-8004 validation once settled. True when
        it settled now."""
        if row.court_status in SETTLED:
            return False
        now = self.market.client.timestamp() if now is None else now
        records = dict((row.settlement or {}).get("court") or {})  # the validation, a delivered result
        try:
            onchain = self.court.get_request(row.request_id)
            if onchain.status == "withheld" and now <= onchain.window_end:
                self._publish(row)  # challenged as unavailable: the committed bytes go on chain
                onchain = self.court.get_request(row.request_id)
            if onchain.status == "committed" and now > onchain.window_end:
                self.court.finalize(row.request_id, self.node)
                onchain = self.court.get_request(row.request_id)
            elif onchain.status == "committed" and self.court.seed_at_risk(onchain, now):
                self.court.store_seed(row.request_id, self.node)  # who was drawn stays known past 256 blocks
            elif onchain.status in ("challenged", "withheld") and now > onchain.window_end:
                self.court.resolve(row.request_id, self.node)  # the vote's (or the response's) end
                onchain = self.court.get_request(row.request_id)
            if onchain.status == row.court_status:
                return False
            paid = self._paid(row, onchain) if onchain.status == "paid" else ()
            if onchain.status == "paid" and not paid:  # its Paid event not found yet: look again later,
                return False  # so the payment enters the book before the row says "paid"
            if onchain.status == "paid":
                paid = (*paid, *self._delivered(row, onchain, records))
            for hook in self.status_hooks:  # webhooks: the owner hears of a challenge
                try:
                    hook(row.model_id, row.request_id, onchain.status)
                except Exception:
                    self.log.exception("a court status hook failed for request %s", row.request_id)
            settled = onchain.status in SETTLED
            if settled:
                records["validation"] = self._validation(row)
                if self.settled is not None:
                    self.settled.labels(onchain.status).inc()
            self.repo.court_moved(row.id, CourtState(onchain.status, onchain.window_end),
                                  {**(row.settlement or {}), "court": records}, paid)
            return settled
        except ProofMarketError as exc:
            self.log.warning("court request %s: could not settle yet: %s", row.request_id, exc.message)
            return False

    def _delivered(self, row: EscrowRequestRow, onchain: CourtRequest, court: dict[str, Any]) -> tuple[Transfer, ...]:
        """A paid request made by a contract through CourtCallbacks: its result delivered into it (said in the row's
        ``court.callback``), and the tip the node earned for the book. Never in the way of the settlement."""
        try:
            done = self.delivery.deliver(row.request_id, onchain.consumer)
        except ProofMarketError as exc:
            self.log.warning("court request %s: could not deliver its result to %s: %s", row.request_id,
                             onchain.consumer, exc.message)
            return ()
        if done is None:
            return ()
        court["callback"] = done.to_json()
        tip = self.delivery.tip_transfer(row.request_id, onchain.consumer, row.model_id, done)
        return () if tip is None else (tip,)

    def _paid(self, row: EscrowRequestRow, onchain: CourtRequest) -> tuple[Transfer, ...]:
        """A paid request in the book, as the chain paid it: the court's transfers of the consumer's escrow to the
        model's owner and to the node (the fee stays in the court), read from the paying transaction."""
        if onchain.status != "paid":
            return ()
        try:
            tx = self.court.payment_tx(row.request_id, from_block=onchain.commit_block)
            receipt = self.market.client.w3.eth.get_transaction_receipt(tx) if tx else None  # type: ignore[arg-type]
        except Exception as exc:  # the chain did not answer: the next pass looks again
            self.log.warning("court request %s: could not read its payment yet: %s", row.request_id, exc)
            return ()
        if tx is None or receipt is None:
            return ()
        court = self.court.contract.address.lower()
        token = UsdcToken(self.market.client, self.market.deployment.usdc).contract
        legs: list[tuple[str, int]] = []
        for event in token.events.Transfer().process_receipt(receipt, errors=DISCARD):
            if str(event["args"]["from"]).lower() == court and int(event["args"]["value"]) > 0:
                legs.append((Accounts.wallet(str(event["args"]["to"])), int(event["args"]["value"])))
        return (Transfer((f"court:{self.chain_id}:{court}:{row.request_id}"), "capture", "court",
                         ((Accounts.wallet(court), -sum(a for _, a in legs)), *legs), model_id=row.model_id,
                         payer=onchain.consumer, tx_hash=tx, memo={"request_id": row.request_id}),)

    def _validation(self, row: EscrowRequestRow) -> dict[str, Any] | None:
        """The ERC-8004 validation record of a settled request (never fails the settlement)."""
        if self.validator is None or row.bundle_cid is None:
            return None
        try:
            return record_court(self.market, self.validator, row.request_id, row.bundle_cid, row.fulfil_tx or "")
        except Exception:
            self.log.warning("court request %s: no ERC-8004 validation record", row.request_id, exc_info=True)
            return None
