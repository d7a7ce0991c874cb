"""A staked validator of attested results (``proofmarket validator run``).

It follows the AttestationCourt: for each ``Committed`` result it learns, one block later, whether it was drawn
to re-check it (``isSampled``: the hash of the block after the commitment, unknown to the node when it
answered). A drawn result is fetched from the node that committed it (``GET /v1/court/{id}/bundle``, signed by
the validator; the node's URL from ``--node`` or from its ERC-8004 registration file), compared with the
committed digest and instances, and re-executed (``verify --reexecute``). A result that differs is challenged
(with the court's bond); a result the node does not serve within half its window is challenged for availability
(``challengeAvailability``): the node must then publish the committed bytes on chain, where this validator reads
them (``Published``), or lose. For every ``Challenged`` result on which it has weight (stake bonded before the
commitment) the validator re-executes too and votes; once the court resolved, it claims its vote (its escrowed
share back, plus the losers' share when it was on the winning side).

Verdicts: ``reproduced`` (no challenge), ``cheated`` (challenge or vote "cheated"), ``cannot_check`` (the
model is not held here: no challenge, no vote), ``unavailable`` (not served: never a vote; an availability
challenge once half the window passed). State (the event cursor, verdicts) is kept in a JSON file, so a
restarted validator resumes. Metrics (Prometheus text) and ``/health`` are served on ``--port``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from prometheus_client import CollectorRegistry

from proofmarket.chain import EventWatcher
from proofmarket.chain.client import ChainClient
from proofmarket.chain.commitments import model_key
from proofmarket.chain.contracts import ModelRegistry, UsdcToken
from proofmarket.chain.court import AttestationCourt
from proofmarket.core.errors import ProofMarketError
from proofmarket.systems.workspace import Workspace
from proofmarket.validator.judging import FAILING_AFTER, MAX_ATTEMPTS, Judging
from proofmarket.validator.metrics import ValidatorMetrics, serve_metrics
from proofmarket.validator.state import Pending, ValidatorState, Verdict

PARALLEL_JUDGING = 4  # requests judged at once (fetches, re-executions)
log = logging.getLogger("proofmarket.validator.process")
__all__ = ["FAILING_AFTER", "MAX_ATTEMPTS", "Validator", "ValidatorMetrics", "ValidatorState", "Verdict",
           "serve_metrics"]


class Validator(Judging):
    """The loop: follow the court's events, judge what is due (``Judging``), challenge, vote and claim."""

    def __init__(self, client: ChainClient, court: AttestationCourt, account: LocalAccount, workspace: Workspace, *,
                 state_path: Path, node_urls: list[str] | None = None, identity: Any = None,
                 from_block: int = 0, confirmations: int | None = None, poll_s: float = 1.0, threads: int | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.client, self.court, self.account, self.workspace = client, court, account, workspace
        self.node_urls = [u.rstrip("/") for u in node_urls or []]
        self.identity = identity
        self.state_path = state_path
        self.state = ValidatorState.load(state_path, from_block)
        # unset: the chain profile's confirmations (0 on the devnet, 3 on testnets): a challenge or a vote on an
        # event a reorg may still undo would spend a bond on a request that may not exist
        depth = client.profile.confirmations if confirmations is None else confirmations
        self.registry = ModelRegistry(client, str(court._call("registry")))
        self.usdc = UsdcToken(client, str(court._call("usdc")))  # the court's token: immutable, read once
        self.from_block = from_block
        self.events = EventWatcher(client, {"court": court, "registry": self.registry},
                                   from_block=self.state.next_block, confirmations=depth, poll_interval=poll_s)
        self.poll_s, self.threads = poll_s, threads
        self.metrics = ValidatorMetrics(registry or CollectorRegistry())
        self.last_poll = 0.0
        self._urls: dict[str, list[str]] = {}
        self._stop = threading.Event()
        # the listings this validator can vote on: on-chain id (hex) -> the held model and the block it declared in
        self.voting: dict[str, dict[str, Any]] = {}
        self._held: dict[bytes, str] = {}
        self._undeclared: list[dict[str, Any]] = []  # listings whose declaration failed: tried again each poll
        self.stake_short = ""  # why the stake is below the court's minimum and could not be topped up ("": it is not)

    @property
    def address(self) -> str:
        return str(self.account.address)

    # --- stake --------------------------------------------------------------------------------
    def ensure_stake(self, amount: int | None = None, bonds: int = 5) -> int:
        """Stake up to the court's validator minimum (or ``amount``) and approve ``bonds`` challenge bonds."""
        params = self.court.params()
        have = self.court.stake_of(self.address, validator=True)
        add = max(0, (amount if amount is not None else params.validator_min_stake) - have)
        need = add + bonds * params.challenge_bond
        if self.usdc.allowance(self.address, self.court.address) < need:
            self.usdc.approve(self.court.address, need, self.account)
        if add:
            self.court.stake(add, self.account, validator=True)
        self.declare_models()
        stake = self.court.stake_of(self.address, validator=True)
        self.metrics.stake.set(stake)
        return stake

    def keep_stake(self) -> None:
        """A lost vote takes its escrowed share of the stake, and below the court's minimum a validator weighs on
        nothing; each challenge spends a bond of the approved allowance. Each poll tops both up from the wallet
        (``ensure_stake``); a wallet that cannot leaves the validator not ready, saying why (``ready``)."""
        params = self.court.params()
        minimum = params.validator_min_stake
        have = self.court.stake_of(self.address, validator=True)
        if have >= minimum and self.usdc.allowance(self.address, self.court.address) >= params.challenge_bond:
            self.stake_short = ""  # staked, and a challenge's bond approved
            return
        try:
            self.ensure_stake()
            self.stake_short = ""
            log.info("validator %s: stake topped up from %s to the court's minimum %s", self.address, have, minimum)
        except ProofMarketError as exc:
            self.stake_short = (f"the stake ({have / 10**6:g} USDC; the court's minimum {minimum / 10**6:g} USDC) or "
                                f"the challenge bonds' allowance could not be topped up: fund the validator's wallet "
                                f"({exc.message})")
            log.warning("validator %s: %s", self.address, self.stake_short)

    def declare_models(self) -> list[str]:
        """Declare on the court every listing of an attested model this validator holds, however the model arrived
        (compiled here, a CAR imported, fetched by CID: ``Workspace.held_models``), from the registry's
        ``ModelRegistered`` events since ``from_block``: its stake weighs only on those models' requests committed
        after the declaration, and counts toward only their quorum. Later listings and models are declared as the
        event loop sees them. The court takes at most ``MAX_DECLARED`` listings per validator: past that a listing
        is logged and left out. Returns the on-chain ids newly declared (hex)."""
        # to the head, unconfirmed: a declaration a reorg makes pointless costs a transaction, a missed one the
        # weight on the listing's first requests
        scan = EventWatcher(self.client, {"registry": self.registry}, from_block=self.from_block, confirmations=0)
        held = self._held_keys()
        declared: list[str] = []
        while scan.next_block <= self.client.block_number():
            for event in scan.poll():
                if event.event == "ModelRegistered":  # the registry's other events (prices, batches) declare nothing
                    declared += self._declare_listing(event.args, held)
        return declared

    def _held_keys(self) -> dict[bytes, str]:
        """The attested models this validator can re-execute, by their registry key: key -> model id."""
        self._held = {model_key(m["id"]): str(m["id"]) for m in self.workspace.held_models("attested")}
        return self._held

    def refresh_models(self) -> list[str]:
        """A model that arrived since the last look (imported, fetched, compiled while running) gets its listings
        declared now, so that this validator weighs on its next request. Returns the ids newly declared."""
        before = dict(self._held)
        if set(self._held_keys()) - set(before):
            try:
                return self.declare_models()
            except Exception:
                self._held = before  # not declared: the next poll sees the model as new and tries again
                raise
        return []

    def _declare_listing(self, args: dict[str, Any], held: dict[bytes, str]) -> list[str]:
        """Declare the listing of a ``ModelRegistered`` event if its model is in ``held`` (the attested models'
        keys) and not yet declared; either way a held listing is one this validator can vote on from its block."""
        key, listing = bytes(args["key"]), bytes(args["modelId"])
        if key not in held:
            return []
        hex_id = "0x" + listing.hex()
        at = self.court.declared_at(self.address, listing)
        new: list[str] = []
        if not at:
            if len(self.court.declared_models(self.address)) >= self.court.max_declared():
                log.warning("validator: the court's limit of %d declared models is reached; listing %s (model %s) is "
                            "not checked here", self.court.max_declared(), hex_id, held[key])
                return []
            at = self.court.declare(listing, self.account).block_number
            new.append(hex_id)
            log.info("validator %s: declared listing %s of model %s (votes on its requests committed after block "
                     "%s)", self.address, hex_id, held[key], at)
        self.voting[hex_id] = {"listing": hex_id, "model_id": held[key], "from_block": at}
        self.metrics.voting.labels(held[key], hex_id).set(at)
        return new

    def ready(self) -> tuple[bool, str]:
        """Whether this validator can vote on anything, and if not, why and what to do."""
        if self.stake_short:
            return False, self.stake_short
        if self.failing >= FAILING_AFTER:
            return False, (f"judging failed {self.failing} times in a row, the last: {self.last_failure}; this "
                           "validator neither challenges nor votes while it cannot judge (its log has each failure)")
        if self.voting:
            return True, f"can vote on {len(self.voting)} listing(s)"
        if not self._held:
            return False, ("no attested model is held here: compile it (proofmarket compile --mode attested DIR), "
                           "import its CAR (proofmarket import model.car) or fetch it by CID (proofmarket import CID "
                           "--node URL); it is declared on the next poll")
        return False, (f"{len(self._held)} attested model(s) held here, none listed on the registry yet (or the "
                       "court's limit of declared listings is reached): a listing is declared once it appears")

    # --- the loop -----------------------------------------------------------------------------
    def poll_once(self) -> int:
        """Keep the stake at the court's minimum, declare what a newly held model is listed as, scan new events,
        then check what is due. Returns how many results were judged."""
        try:
            self.keep_stake()
            self.refresh_models()
        except ProofMarketError as exc:  # the chain refused or is away: tried again on the next poll
            self.metrics.errors.inc()
            log.warning("validator: keeping the stake or declaring a newly held model failed: %s", exc.message)
        self._retry_declarations()
        for event in self.events.poll():
            try:
                self._on_event(event.event, event.args, event.block_number)
            except Exception:  # one malformed event never stops the others
                self.metrics.errors.inc()
                log.exception("validator: event %s in block %s not understood", event.event, event.block_number)
        self.state.next_block = self.events.next_block
        self.metrics.next_block.set(self.state.next_block)
        self.state.save(self.state_path)
        judged = self._due()
        self.state.save(self.state_path)
        self.last_poll = time.time()
        return judged

    def run(self, stop: threading.Event | None = None) -> None:
        self._stop = stop or self._stop
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                self.metrics.errors.inc()
                log.exception("validator: poll failed")
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()

    def healthy(self) -> bool:
        return time.time() - self.last_poll < max(30.0, 10 * self.poll_s)

    def _on_event(self, name: str, args: dict[str, Any], block: int) -> None:
        if name == "ModelRegistered":  # a new listing of a model held here: declared, so that we weigh on it
            self._declare_new_listing(args)
            return
        if "requestId" not in args:  # stakes, parameters, batches
            return
        rid = int(args["requestId"])
        if name == "Committed":
            self.state.pending[rid] = vars(Pending(
                rid, str(args["node"]), [int(v) for v in args["instances"]], "0x" + bytes(args["bundleDigest"]).hex(),
                block, int(args["windowEnd"])))
        elif name == "Challenged":
            if rid in self.state.pending:
                self.state.pending[rid]["challenged"] = True
        elif name == "Published":  # the node answered an availability challenge: the bundle is on chain
            if rid in self.state.pending:
                self.state.pending[rid]["published_block"] = block
        elif name in ("Resolved", "Paid", "Refunded") and rid in self.state.pending \
                and not self.court.vote_of(rid, self.address).weight:
            self.state.pending.pop(rid, None)  # (a vote of ours, on chain, is claimed first, in _due)

    def _retry_declarations(self) -> None:
        retry, self._undeclared = self._undeclared, []
        for args in retry:
            self._declare_new_listing(args)

    def _declare_new_listing(self, args: dict[str, Any]) -> None:
        """Declare a listing the registry just announced; a declaration the chain refused or could not take is
        kept and tried again on each poll (the event itself is not seen twice)."""
        try:
            self._declare_listing(args, self._held or self._held_keys())
        except Exception as exc:  # noqa: BLE001 (the chain away, a transaction refused: any of them, retried)
            self.metrics.errors.inc()
            self._undeclared.append(args)
            log.warning("validator: declaring listing 0x%s failed (tried again on the next poll): %s",
                        bytes(args["modelId"]).hex(), getattr(exc, "message", exc))

    def _due(self) -> int:
        """Judge every pending request, several at once; a failure is contained to its request, and the state is
        saved once they are done (a validator stopped mid-way judges again what it had not saved, and claims every
        vote the court has of it)."""
        judged = 0
        head = self.client.block_number()
        now = self.client.timestamp()
        # several at once: a node that trickles one bundle (each fetch has its deadline) stalls no other request
        with ThreadPoolExecutor(max_workers=PARALLEL_JUDGING, thread_name_prefix="validator-judge") as pool:
            pending = list(self.state.pending.items())
            futures = {pool.submit(self._due_one, rid, p, head, now): rid for rid, p in pending}
            for future in as_completed(futures):
                try:
                    judged += future.result()
                except Exception as exc:  # noqa: BLE001 (request N's failure never stops request N+1)
                    self._failed(futures[future], exc)
        self.state.save(self.state_path)  # once every judge is done (a vote is claimed from the chain's record)
        return judged

    def _due_one(self, rid: int, p: dict[str, Any], head: int, now: int) -> int:
        onchain = self.court.get_request(rid)
        if onchain.outcome != "none" and onchain.status not in ("committed", "challenged", "withheld"):
            self._claim(rid)  # from the chain's record of our vote, not a local flag a crash could lose
            self.state.pending.pop(rid, None)
            return 0
        if onchain.status not in ("committed", "challenged", "withheld"):
            self.state.pending.pop(rid, None)
            return 0
        if onchain.status == "challenged":
            return self._vote(rid, p, onchain)
        if onchain.status == "withheld":
            return 0  # the node must publish the bundle on chain; the court decides if it does not
        if head <= onchain.commit_block + 1:
            return 0  # the draw is known one block after the commitment
        if p.get("sampled") is False:
            return 0  # not drawn: followed only to vote if it is challenged
        known = self.state.verdicts.get(rid, {})
        if known and (known["verdict"] not in ("unavailable", "error") or known.get("attempts", 0) >= MAX_ATTEMPTS):
            return 0  # judged, or given up on (judged again if someone challenges it: its vote is asked for)
        if not self.court.is_sampled(rid, self.address):
            self.metrics.checks.labels("not_sampled").inc()
            p["sampled"] = False
            return 0
        verdict = self.check(rid, p["node"], p["instances"], p["digest"])
        if verdict.verdict == "unavailable":  # withheld? challenged for availability once half the window passed
            committed_at = self.client.timestamp(onchain.commit_block)
            if now < (committed_at + onchain.window_end) // 2:
                return 0
        self._record(verdict)
        if verdict.verdict == "unavailable" and now <= onchain.window_end:
            self._challenge(rid, verdict, p, availability=True)  # the node must publish it on chain
        elif verdict.verdict == "cheated" and now <= onchain.window_end and not self._challenge(rid, verdict, p):
            onchain = self.court.get_request(rid)
            if onchain.status == "challenged":  # another validator challenged first: our verdict is a vote, now
                self._vote(rid, p, onchain)
        return 1  # followed until it is paid or resolved: a challenge by someone else asks for our vote

    def _vote(self, rid: int, p: dict[str, Any], onchain: Any) -> int:
        me = self.address.lower()
        if (onchain.node or "").lower() == me or self.court.has_voted(rid, self.address):
            return 0
        known = self.state.verdicts.get(rid)
        verdict = Verdict(rid, known["verdict"], known["reason"]) if known and known["verdict"] in (
            "reproduced", "cheated") else self.check(rid, p["node"], p["instances"], p["digest"])
        self._record(verdict)
        if verdict.verdict not in ("reproduced", "cheated"):
            return 0  # cannot check it, or could not get it: abstain (availability is the court's rule, not ours)
        if self.court.weight_of(rid, self.address) == 0:
            return 0  # staked after the commitment (or a party): no weight on this request
        cheated = verdict.verdict == "cheated"
        try:
            self.court.vote(rid, cheated, self.account)
            p["voted"] = True
            self.metrics.votes.labels(str(cheated).lower()).inc()
            log.info("validator %s: voted on request %s: node cheated=%s (%s)", me, rid, cheated, verdict.reason)
        except ProofMarketError as exc:
            self.metrics.errors.inc()
            log.warning("validator: vote on request %s refused: %s", rid, exc.message)
        return 1

    def _challenge(self, rid: int, verdict: Verdict, p: dict[str, Any], *, availability: bool = False) -> bool:
        """Challenge ``rid`` (for availability, or as cheated); False when the court refused it."""
        try:
            if availability:
                self.court.challenge_availability(rid, self.account)
            else:
                self.court.challenge(rid, self.account)
                p["voted"] = True  # the challenge is our vote "cheated"
            self.metrics.challenges.inc()
            log.warning("validator %s: challenged request %s%s: %s", self.address, rid,
                        " for availability" if availability else "", verdict.reason)
            return True
        except ProofMarketError as exc:
            self.metrics.errors.inc()
            log.warning("validator: challenge of request %s refused: %s", rid, exc.message)
            return False

    def _claim(self, rid: int) -> None:
        """Settle our vote on a resolved request: the escrowed share (and the losers') back to our stake."""
        try:
            vote = self.court.vote_of(rid, self.address)
            if vote.weight and not vote.claimed:
                self.court.claim(rid, self.address, self.account)
                self.metrics.stake.set(self.court.stake_of(self.address, validator=True))
        except ProofMarketError as exc:
            self.metrics.errors.inc()
            log.warning("validator: claim of the vote on request %s refused: %s", rid, exc.message)
