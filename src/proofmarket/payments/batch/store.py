"""The x402 SDK's server-side ``ChannelStorage`` over the node's database (``payments/batch/repo.py``).

The SDK's channel manager (claims, sweeps, refunds) and this node's ``batch-settlement`` rail read and change
channels through it. ``update_channel`` is a compare-and-swap on the row's version: every node on one database
serialises a channel's updates through the same row (the SDK's in-memory storage only serialises one process).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable

from x402.mechanisms.evm.batch_settlement.server.storage import Channel, ChannelUpdate, ChannelUpdateResult
from x402.mechanisms.evm.batch_settlement.utils import normalize_channel_id

from proofmarket.payments.batch.repo import ChannelRepo, NewCharge, State


class DbChannelStorage:
    def __init__(self, repo: ChannelRepo) -> None:
        self.repo = repo

    def get(self, channel_id: str) -> Channel | None:
        state = self.repo.get(normalize_channel_id(channel_id))
        return Channel.from_dict(state) if state is not None else None

    def read(self, channel_id: str) -> tuple[Channel | None, str | None]:
        """The channel and why the chain refused it (None: it did not), in one read."""
        state, refused = self.repo.read(normalize_channel_id(channel_id))
        return (Channel.from_dict(state) if state is not None else None), refused

    def list(self) -> list[Channel]:
        return [Channel.from_dict(s) for s in self.repo.all()]

    def of_payer(self, payer: str) -> builtins.list[Channel]:
        return [Channel.from_dict(s) for s in self.repo.all(payer)]

    def update_channel(self, channel_id: str, update: ChannelUpdate,
                       charge: Callable[[Channel], NewCharge | None] | None = None) -> ChannelUpdateResult:
        """The SDK's contract: ``update(current)`` returns the next channel, the same object (unchanged) or None
        (the SDK's "delete": kept here as it is, a channel's history stays). ``charge(next)``: a charge row stored
        in the same transaction as the new state."""
        key = normalize_channel_id(channel_id)
        seen: dict[int, Channel | None] = {}

        def change(state: State | None) -> State | None:
            current = Channel.from_dict(state) if state is not None else None
            proposed = update(current.copy() if current is not None else None)
            seen[0] = proposed
            if proposed is None or (current is not None and proposed.to_dict() == current.to_dict()):
                return state
            return proposed.to_dict()

        with_charge = (lambda s: charge(Channel.from_dict(s))) if charge is not None else None
        state, changed = self.repo.update(key, change, with_charge)
        if not changed:
            return ChannelUpdateResult(channel=Channel.from_dict(state) if state is not None else None,
                                       status="unchanged")
        assert state is not None
        return ChannelUpdateResult(channel=Channel.from_dict(state), status="updated")
