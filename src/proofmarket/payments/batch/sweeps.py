"""Claims and sweeps of the ``batch-settlement`` rail, then each model's share sent to its payee.

    due?        the unclaimed charges reach ``threshold_atomic``, or some wait longer than ``interval_s``
    claim       the SDK's channel manager claims every channel's charged total, up to 100 channels per
                ``claimWithSignature`` transaction (the node key signs the claim batch as receiverAuthorizer)
    sweep       ``settle(receiver, token)`` moves the claimed funds to the node's account in one transfer
    pay out     the charges the claims covered are owed to their payees in the book (each call's charge row names
                its model and payee: the listing's revenue splitter, whose owner, prover and platform shares are on
                chain, or the model's owner); the node's one payout path (``payouts.Payouts``) pays them, one USDC
                transfer per payee, its transaction stored with the sweep
An owner checks a sweep from chain data and the node's receipts: ``GET /v1/channels/sweeps/{id}`` lists the claim
and settle transactions, each payee's transfer and the charges (model, amount, the node's signed receipt) it sums.

One node sweeps at a time (a lease on the database). A sweep whose settle failed is settled on the next pass, one
interrupted after its settle resumes its payouts; a payee whose transfer is recorded is never paid twice. A claim
batch the chain would refuse is split until the refused channel stands alone (``claimable``); charges a cooperative
refund claimed before any sweep make a sweep due (``due``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import (
    ClaimOptions,
    get_claimable_vouchers_from_channels,
)
from x402.mechanisms.evm.batch_settlement.server.storage import Channel

from proofmarket.core.background import Service
from proofmarket.db.leases import LeaseRepo
from proofmarket.payments.batch.repo import ChannelRepo
from proofmarket.payments.batch.tables import ChannelChargeRow
from proofmarket.payments.payouts import Payouts

log = logging.getLogger(__name__)

LEASE = "batch-settlement-sweeper"
MAX_CLAIMS_PER_TX = 100


class ChannelManager(Protocol):
    """What the sweeper needs of the SDK's ``BatchSettlementChannelManagerSync``."""

    def claim(self, opts: ClaimOptions | None = None) -> list[Any]: ...

    def settle(self) -> Any: ...


@dataclass(frozen=True)
class SweepPolicy:
    interval_s: float = 300.0  # the longest a charge waits for its claim
    threshold_atomic: int = 10_000_000  # claim at once when this much is unclaimed (10 USDC)


class Sweeper(Service):
    """The rail's claims, sweeps and payouts: a background service of the node (``tick`` every poll: a sweep when
    one is due, or one an earlier pass left unpaid); ``run`` is also what the operator's route calls."""

    name = "sweeper"

    def __init__(self, repo: ChannelRepo, manager: ChannelManager, receiver: str, policy: SweepPolicy,
                 leases: LeaseRepo | None = None, poll_s: float = 5.0) -> None:
        super().__init__(poll_s)  # the sweep's own lease is taken in ``run`` (the operator's route takes it too)
        self.repo, self.manager, self.receiver, self.policy = repo, manager, receiver.lower(), policy
        self.leases = leases  # held as ``self.holder``: this host, process and sweeper (two nodes in a process: two)
        self.payouts: Payouts | None = None  # the node's one payout path (set by the node)
        # whether the chain would refuse claim(claims): isolates a bad channel (``chain.channels.claims_revert``)
        self.simulate: Callable[[list[Any]], bool] | None = None
        # the withdrawals payers armed since the last look: (channel id, amount, finalizable at), from the contract's
        # ``WithdrawInitiated`` events (``chain.channels.ChannelReader.exits_since_last``)
        self.exits: Callable[[], list[tuple[str, int, int]]] | None = None
        self._sweep_lock = threading.Lock()

    # --- schedule --------------------------------------------------------------------------------
    def unclaimed(self) -> int:
        return sum(max(0, int(s.get("chargedCumulativeAmount", 0)) - int(s.get("totalClaimed", 0)))
                   for s in self.repo.all())

    def exiting(self) -> list[str]:
        """Channels with charges not claimed yet whose payer armed a withdrawal: claimed at once, not at the next
        scheduled sweep (once the delay passes, the payer's exit takes what is not claimed)."""
        return [str(s.get("channelId", "")).lower() for s in self.repo.all()
                if int(s.get("withdrawRequestedAt", 0) or 0)
                and int(s.get("chargedCumulativeAmount", 0)) > int(s.get("totalClaimed", 0))]

    def follow_exits(self) -> int:
        """Mark each known channel whose payer armed a withdrawal since the last look (its mirror is no longer
        fresh: its next voucher is checked on the chain, with the withdrawal taken away). Returns how many."""
        if self.exits is None:
            return 0
        try:
            armed = self.exits()
        except Exception:  # the chain is away: looked at again next tick (the calls read the chain themselves)
            log.warning("could not read the channels' withdrawals", exc_info=True)
            return 0
        marked = 0
        for channel_id, amount, finalizable_at in armed:
            def mark(state: dict[str, Any] | None, at: int = finalizable_at) -> dict[str, Any] | None:
                if state is None:
                    return state  # not a channel of this node: unchanged
                delay = int((state.get("channelConfig") or {}).get("withdrawDelay", 0) or 0)
                return {**state, "withdrawRequestedAt": max(1, at - delay), "onchainSyncedAt": None}

            state, _ = self.repo.update(channel_id, mark)
            if state is not None:
                marked += 1
                log.warning("the payer of channel %s armed a withdrawal of %s (final at %s): its charges are claimed "
                            "now", channel_id, amount, finalizable_at)
        return marked

    def due(self, now_s: float) -> bool:
        unclaimed = self.unclaimed()
        if unclaimed <= 0:
            return bool(self._covered())  # claimed already (a cooperative refund claims the charged total)
        if unclaimed >= self.policy.threshold_atomic or self.exiting():
            return True
        oldest = min((c.created_at.timestamp() for c in self.repo.charges(unswept=True, limit=1)), default=now_s)
        return now_s - oldest >= self.policy.interval_s

    def tick(self) -> dict[str, Any] | None:
        self.follow_exits()
        if self.due(time.time()) or self.repo.sweeps(status="settled", limit=1) \
                or self.repo.sweeps(status="claimed", limit=1):
            return self.run()
        return None

    # --- one pass --------------------------------------------------------------------------------
    def run(self, wait_s: float = 0.0) -> dict[str, Any] | None:
        """Claim, sweep and pay out what is charged (and finish a sweep an earlier pass left unpaid). Returns the
        sweep (as ``describe`` shows it), None when there was nothing to sweep or another node holds the lease.
        ``wait_s``: how long to wait for another node's sweep to finish first (the operator's route: a sweep it asks
        for then covers everything charged before it asked, not only what the other node's pass left)."""
        with self._sweep_lock:
            if self.leases is not None and not self.leases.acquire_within(LEASE, self.holder, 600, wait_s):
                return None
            try:
                for stuck in self.repo.sweeps(status="claimed"):  # claimed, its settle failed: settle it now
                    self._settle(stuck.id)
                for unfinished in self.repo.sweeps(status="settled"):
                    self._pay_out(unfinished.id)
                return self._sweep()
            finally:
                if self.leases is not None:
                    self.leases.release(LEASE, self.holder)

    def _covered(self) -> list[ChannelChargeRow]:
        """Unswept charges whose channel's claimed total covers them: by this sweep's claims, or by a cooperative
        refund's (which claims the charged total before it pays the rest back)."""
        claimed = {str(s.get("channelId", "")).lower(): int(s.get("totalClaimed", 0)) for s in self.repo.all()}
        return [c for c in self.repo.charges(unswept=True) if c.cumulative <= claimed.get(c.channel_id, 0)]

    def claimable(self, channels: list[Channel], _ctx: Any = None) -> list[Channel]:
        """The channels to claim: not refused, and whose claims the contract takes. A batch the chain would refuse
        (an ``eth_call`` of ``claim``) is split in halves until each refused channel stands alone; that channel is
        marked refused (dropped from claims, served no more) and the honest ones are claimed."""
        due = [c for c in channels if int(c.charged_cumulative_amount) > int(c.total_claimed)
               and not self.repo.refused(c.channel_id)]
        if self.simulate is None or not due:
            return due
        return self._isolate(due)

    def _isolate(self, channels: list[Channel]) -> list[Channel]:
        assert self.simulate is not None
        if not self.simulate(get_claimable_vouchers_from_channels(channels, None)):
            return channels
        if len(channels) == 1:
            channel = channels[0]
            log.warning("the chain refuses the claim of channel %s: it is dropped from claims and served no more",
                        channel.channel_id)
            self.repo.refuse(channel.channel_id, "the channel contract refuses its voucher claim")
            return []
        half = len(channels) // 2
        return self._isolate(channels[:half]) + self._isolate(channels[half:])

    def _sweep(self) -> dict[str, Any] | None:
        claims = self.manager.claim(ClaimOptions(max_claims_per_batch=MAX_CLAIMS_PER_TX,
                                                 select_claim_channels=self.claimable))
        covered_rows = self._covered()
        covered = [c.id for c in covered_rows]
        if not covered:
            return None
        for charge in covered_rows:  # the chain paid these: owed to their payees in the book
            self.repo.claimed(charge)
        sweep = self.repo.open_sweep([str(c.transaction) for c in claims], covered)
        allocations = self._allocations(sweep.id)
        self.repo.set_sweep(sweep.id, allocations=allocations)
        self._settle(sweep.id)
        log.info("swept %s atomic units of %d charges", sweep.amount, len(covered))
        self._pay_out(sweep.id)
        return self.describe(sweep.id)

    def _settle(self, sweep_id: int) -> None:
        """Move what was claimed to the receiver (``settle(receiver, token)``); anyone may call it on chain, so
        "nothing to settle" means another caller moved it already: the sweep goes on to its payouts."""
        try:
            tx = str(self.manager.settle().transaction)
        except Exception as exc:
            if "nothing_to_settle" not in str(exc):
                self.repo.set_sweep(sweep_id, error=f"settle: {exc}")
                raise
            tx = ""
        self.repo.set_sweep(sweep_id, status="settled", settle_tx=tx, error=None)

    def _allocations(self, sweep_id: int) -> dict[str, Any]:
        by_payee: dict[str, dict[str, Any]] = defaultdict(lambda: {"amount": 0, "models": defaultdict(int),
                                                                   "charges": 0, "tx": None})
        for charge in self.repo.charges(sweep_id=sweep_id):
            payee = by_payee[charge.pay_to.lower()]
            payee["amount"] += charge.amount
            payee["models"][charge.model_id] += charge.amount
            payee["charges"] += 1
        return {k: {**v, "amount": str(v["amount"]), "models": {m: str(a) for m, a in v["models"].items()}}
                for k, v in by_payee.items()}

    def _pay_out(self, sweep_id: int) -> None:
        """The payees are paid by the node's one payout path (``payouts.Payouts``: what the book owes them, every
        rail's money together); the sweep records each payee's transfer. Without it (a sweeper alone) the sweep
        stays ``settled``: its charges are owed in the book until a payout path runs."""
        sweep = self.repo.sweep(sweep_id)
        if sweep is None or sweep.status != "settled" or self.payouts is None:
            return
        report = self.payouts.run()
        if report.skipped:  # another node's run holds the payouts lease: it pays them; finished next pass
            return
        allocations = dict(sweep.allocations or {})
        for payee, alloc in allocations.items():
            alloc["tx"] = "self" if payee == self.receiver else report.paid.get(payee, alloc.get("tx"))
        self.repo.set_sweep(sweep_id, allocations=allocations, status="distributed")

    def describe(self, sweep_id: int) -> dict[str, Any] | None:
        sweep = self.repo.sweep(sweep_id)
        if sweep is None:
            return None
        return {"id": sweep.id, "status": sweep.status, "claim_txs": sweep.claim_txs, "settle_tx": sweep.settle_tx,
                "amount": str(sweep.amount), "allocations": sweep.allocations or {}, "error": sweep.error,
                "created_at": sweep.created_at.isoformat(),
                "finished_at": sweep.finished_at.isoformat() if sweep.finished_at else None,
                "charges": [{"id": c.id, "job_id": c.job_id, "model_id": c.model_id, "pay_to": c.pay_to,
                             "amount": str(c.amount), "channel_id": c.channel_id, "cumulative": str(c.cumulative),
                             "receipt": c.receipt} for c in self.repo.charges(sweep_id=sweep_id)]}
