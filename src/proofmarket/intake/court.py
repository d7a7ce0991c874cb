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

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from prometheus_client import CollectorRegistry, Counter
from web3.logs import DISCARD

from proofmarket.chain import ChainEvent
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
from proofmarket.core.errors import ContractReverted, CourtBundleTooLarge, CourtUnavailable, ProofMarketError, from_code
from proofmarket.db import CallStatus, CourtState, EscrowRepo, EscrowRequestRow, EscrowStatus
from proofmarket.db.book import Accounts, Transfer
from proofmarket.intake.callback_terms import DEFAULT_RULE, CallbackRule
from proofmarket.intake.court_delivery import CourtDelivery
from proofmarket.intake.rails import COURT_RAIL, CourtRail, chain_ticket
from proofmarket.intake.watcher import ChainWatcher
from proofmarket.onchain import Market
from proofmarket.onchain.validations import record_court
from proofmarket.store.cid import digest_of
from proofmarket.systems import parse_bundle
from proofmarket.systems.attested import instances
from proofmarket.systems.attested.service import GenerateRequest
from proofmarket.systems.registry import ATTESTED_SYSTEM

Ready = list[tuple[EscrowRequestRow, Commitment]]

if TYPE_CHECKING:
    from proofmarket.calls.service import CallService


class CourtService(ChainWatcher[CourtRequest]):
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

    def with_metrics(self, registry: CollectorRegistry | None) -> CourtService:
        """Count commitments and outcomes on the node's Prometheus ``registry``."""
        if registry is not None:
            self.committed = Counter("proofmarket_court_commitments", "attested results committed on the court",
                                     registry=registry)
            self.settled = Counter("proofmarket_court_settled", "court requests settled, by outcome", ["outcome"],
                                   registry=registry)
        return self

    @property
    def node(self) -> LocalAccount:
        return self.market.accounts.prover

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
            # every generation queued on the engine before any is waited for: its workers run them side by side
            jobs = [(row, self._attempt(row, partial(self._queue_generation, row))) for row in claimed]
            ready: Ready = []
            for row, job_id in jobs:
                made = None if job_id is None else self._attempt(row, partial(self._generated, row, job_id))
                if made is not None:
                    ready.append((row, made))
            return self._commit(ready) if ready else 0

    def settle(self) -> int:
        """Finalize our commitments whose window closed, record verdicts (paid, slashed) and their ERC-8004
        validation. Returns how many settled."""
        done = 0
        now = self.market.client.timestamp()
        for row in self.repo.with_status(self.chain_id, self.address, EscrowStatus.FULFILLED):
            if row.court_status in SETTLED:
                continue
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
                if onchain.status != row.court_status:
                    paid = self._paid(row, onchain) if onchain.status == "paid" else ()
                    if onchain.status == "paid" and not paid:  # its Paid event not found yet: look again later,
                        continue  # so the payment enters the book before the row says "paid"
                    if onchain.status == "paid":
                        paid = (*paid, *self._delivered(row, onchain, records))
                    for hook in self.status_hooks:  # webhooks: the owner hears of a challenge
                        try:
                            hook(row.model_id, row.request_id, onchain.status)
                        except Exception:
                            self.log.exception("a court status hook failed for request %s", row.request_id)
                    if onchain.status in SETTLED:
                        records["validation"] = self._validation(row)
                        done += 1
                        if self.settled is not None:
                            self.settled.labels(onchain.status).inc()
                    self.repo.court_moved(row.id, CourtState(onchain.status, onchain.window_end),
                                          {**(row.settlement or {}), "court": records}, paid)
            except ProofMarketError as exc:
                self.log.warning("court request %s: could not settle yet: %s", row.request_id, exc.message)
        return done

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
            row = self.repo.get(self.chain_id, self.address, int(event.args["requestId"]))  # for generation
            if row is not None and row.status == EscrowStatus.FULFILLED:
                try:
                    self._publish(row)
                except ProofMarketError as exc:  # settle() tries again within the window
                    self.log.warning("court request %s: could not publish yet: %s", row.request_id, exc.message)
        elif event.event in ("Challenged", "Resolved"):
            self._wake.set()  # settle() reads the new status

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
        ticket = chain_ticket(COURT_RAIL, self.chain_id, self.address, row)
        found = self.calls.repo.by_idempotency_key(ticket.nonce)  # this attempt's call (queued before a restart)
        return found.id if found is not None else self.calls.submit_request(row.model_id, (row.inputs or {})[
            "inputs"], key=ticket.nonce, ticket=ticket, system=ATTESTED_SYSTEM, rail=self.kind).id

    def _generated(self, row: EscrowRequestRow, job_id: str) -> Commitment:
        """The commitment of the request's answer once its call generated it (a watcher outside a node: here)."""
        doc = (row.inputs or {}).get("inputs")
        if self.calls is None:
            bundle, bundle_cid = self.market.generate_attested(row.model_id, doc)
        else:
            call = self._wait_call(row, job_id)
            if call.status == CallStatus.FAILED or call.bundle_cid is None:
                raise from_code(call.error_code or "proving_failed", call.error_message or "the call failed",
                                {"job_id": call.id})
            bundle_cid = call.bundle_cid
            bundle = parse_bundle(self.market.workspace.store.get_json(bundle_cid))
        size = self.market.workspace.store.path(bundle_cid).stat().st_size
        if size > MAX_PUBLISHED_BYTES:  # uncommitted: a bundle the court's publish refuses could not be defended
            raise CourtBundleTooLarge(f"the bundle of court request {row.request_id} is {size} bytes, over the "
                                      f"{MAX_PUBLISHED_BYTES} bytes the court's publish takes: not committed (the "
                                      "consumer takes its money back after the deadline)", size=size,
                                      limit=MAX_PUBLISHED_BYTES)
        self.repo.proved(row.id, bundle_cid)
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

    def _validation(self, row: EscrowRequestRow) -> dict[str, Any] | None:
        """The ERC-8004 validation record of a settled request (never fails the settlement)."""
        if self.validator is None or row.bundle_cid is None:
            return None
        try:
            return record_court(self.market, self.validator, row.request_id, row.bundle_cid, row.fulfil_tx or "")
        except Exception:
            self.log.warning("court request %s: no ERC-8004 validation record", row.request_id, exc_info=True)
            return None
