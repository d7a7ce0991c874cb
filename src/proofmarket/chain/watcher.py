"""Poll contract logs with a confirmation depth and yield decoded events, resumably.

A log in block ``b`` is yielded once the head is at least ``b + confirmations``. ``next_block`` is
the first block not yet fully delivered: persist it and pass it back as ``from_block`` to resume.
Delivery is at least once (a resumed watcher may repeat the events of an unfinished block range),
so handlers must be idempotent; events come in chain order (block, log index). One ``eth_getLogs`` covers
at most ``batch_size`` blocks: by default the chain profile's ``log_range`` (public RPCs cap the range).

Reorgs: the watcher remembers the hash of the last block of each scan and of every block it found events in (the
newest ``history`` of them) and, before each scan, asks whether the newest is still canonical. When it is not (a
reorg deeper than ``confirmations``), the newest remembered block still canonical is found, ``next_block`` moves
back to just after it, ``on_rollback(first_block)`` tells the consumer that what it took from ``first_block`` on
may be gone, and the events from there are read again from the canonical chain. A watcher resumed from a saved
cursor remembers nothing yet: a reorg while it was stopped is not seen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils.abi import event_abi_to_log_topic
from web3.contract import Contract

from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import BoundContract
from proofmarket.core.profiles import profile_for

log = logging.getLogger(__name__)
HISTORY = 256  # remembered block hashes: a reorg deeper than the oldest of them rolls back to it


@dataclass(frozen=True)
class ChainEvent:
    contract: str
    event: str
    args: dict[str, Any]
    address: str
    block_number: int
    tx_hash: str
    log_index: int


class EventWatcher:
    def __init__(
        self,
        client: ChainClient,
        contracts: Mapping[str, BoundContract | Contract],
        *,
        from_block: int = 0,
        confirmations: int = 1,
        batch_size: int | None = None,
        poll_interval: float = 1.0,
        on_rollback: Callable[[int], None] | None = None,
        history: int = HISTORY,
    ) -> None:
        if confirmations < 0 or (batch_size is not None and batch_size < 1) or history < 1:
            raise ValueError("confirmations must be >= 0, batch_size and history >= 1")
        self.client = client
        self.next_block = from_block
        self.confirmations = confirmations
        self._batch_size = batch_size
        self.poll_interval = poll_interval
        self.on_rollback = on_rollback
        self.history = history
        self.rolled_back_from: int | None = None  # the first block of the last rollback (None: none yet)
        self._hashes: dict[int, str] = {}  # block number -> the hash it had when read
        self._by_address: dict[str, tuple[str, Contract]] = {}
        self._topics: dict[tuple[str, bytes], str] = {}
        for name, bound in contracts.items():
            self._add(name, bound.contract if isinstance(bound, BoundContract) else bound)

    @property
    def batch_size(self) -> int:
        """Blocks per eth_getLogs: the given size, else the chain profile's log range (asked once)."""
        if self._batch_size is None:
            self._batch_size = profile_for(self.client.chain_id).log_range
        return self._batch_size

    def _add(self, name: str, contract: Contract) -> None:
        self._by_address[contract.address.lower()] = (name, contract)
        for item in contract.abi:
            if item.get("type") == "event":
                topic = event_abi_to_log_topic(item)  # type: ignore[arg-type]
                self._topics[(contract.address.lower(), topic)] = str(item.get("name"))

    def poll(self) -> list[ChainEvent]:
        """Scan up to ``batch_size`` confirmed blocks; return their events in chain order."""
        events, to_block = self._scan()
        self.next_block = to_block + 1
        return events

    def events(self, stop: threading.Event | None = None) -> Iterator[ChainEvent]:
        """Yield events until ``stop`` is set, sleeping ``poll_interval`` when caught up.

        ``next_block`` moves past a batch only once all its events were yielded, so a consumer that
        stops mid-batch and resumes from ``next_block`` sees those events again (at least once).
        """
        stop = stop or threading.Event()
        while not stop.is_set():
            batch, to_block = self._scan()
            for event in batch:
                yield event
                if stop.is_set():
                    return
            self.next_block = to_block + 1
            if not batch and self.next_block > self.client.block_number() - self.confirmations:
                stop.wait(self.poll_interval)

    def _scan(self) -> tuple[list[ChainEvent], int]:
        self._check_canonical()
        safe_head = self.client.block_number() - self.confirmations
        if safe_head < self.next_block:
            return [], self.next_block - 1
        to_block = min(safe_head, self.next_block + self.batch_size - 1)
        params: dict[str, Any] = {
            "fromBlock": self.next_block,
            "toBlock": to_block,
            "address": [c.address for _, c in self._by_address.values()],
        }
        last = self._hash_of(to_block)
        with self.client.translate("read logs"):
            logs = self.client.w3.eth.get_logs(params)  # type: ignore[arg-type]
        if last is None or self._hash_of(to_block) != last:  # reorged while reading: read it again next time
            return [], self.next_block - 1
        events = [e for e in (self._decode(log) for log in logs) if e is not None]
        for log_entry in logs:
            self._remember(int(log_entry["blockNumber"]), _hex(log_entry["blockHash"]))
        self._remember(to_block, last)
        return sorted(events, key=lambda e: (e.block_number, e.log_index)), to_block

    # --- reorgs -------------------------------------------------------------------------------
    def _check_canonical(self) -> None:
        """Move ``next_block`` back when a block read before left the canonical chain (see the module's doc)."""
        if not self._hashes:
            return
        newest = max(self._hashes)
        if self._hash_of(newest) == self._hashes[newest]:
            return  # its ancestors are canonical too: a block's hash covers its parent's
        kept = None
        for number in sorted(self._hashes, reverse=True):
            if self._hash_of(number) == self._hashes[number]:
                kept = number
                break
        # deeper than remembered (or a restart, which remembers one block): ``history`` blocks before the oldest
        first = kept + 1 if kept is not None else max(0, min(self._hashes) - self.history)
        self._hashes = {n: h for n, h in self._hashes.items() if n < first}
        if first >= self.next_block:
            return  # nothing delivered from there yet
        log.warning("chain reorganised: block %d is no longer canonical (newest kept: %s); reading again from %d",
                    newest, kept, first)
        self.next_block = first
        self.rolled_back_from = first
        if self.on_rollback is not None:
            self.on_rollback(first)

    def hash_at(self, number: int) -> str | None:
        """The hash block ``number`` had when this watcher read it (None: not remembered)."""
        return self._hashes.get(number)

    def remember(self, number: int, block_hash: str) -> None:
        """Seed what a previous run read (its cursor's block and hash): a block that left the chain while the
        watcher was stopped is then seen at the first scan, and the ``history`` blocks before it read again."""
        self._remember(number, block_hash)

    def _remember(self, number: int, block_hash: str) -> None:
        self._hashes[number] = block_hash
        while len(self._hashes) > self.history:
            del self._hashes[min(self._hashes)]

    def _hash_of(self, number: int) -> str | None:
        """The canonical hash of block ``number`` now (None: the chain is shorter)."""
        block = self.client.rpc("eth_getBlockByNumber", [hex(number), False])
        return None if not block else _hex(block["hash"])

    def _decode(self, log: Any) -> ChainEvent | None:
        address = str(log["address"]).lower()
        topics = log["topics"]
        name = self._topics.get((address, bytes(topics[0]))) if topics else None
        if name is None:
            return None
        contract_name, contract = self._by_address[address]
        with self.client.translate(f"decode {name}"):
            decoded = contract.events[name]().process_log(log)
        return ChainEvent(
            contract_name,
            name,
            dict(decoded["args"]),
            contract.address,
            int(log["blockNumber"]),
            "0x" + bytes(log["transactionHash"]).hex(),
            int(log["logIndex"]),
        )


def _hex(value: Any) -> str:
    """A hash as lower-case 0x-hex, whether the RPC gave bytes or a string."""
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()
