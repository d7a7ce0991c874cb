"""Sending transactions that survive a real chain: one nonce sequence per account, EIP-1559 fees within the
profile's cap, and a transaction not mined in time re-sent with the same nonce and higher fees.

- ``Nonces``: the next nonce of each (chain, account) in this process, shared by every ``ChainClient`` of the
  process (two clients of one key would otherwise race for nonces). It starts from the chain's pending count and
  goes back to it when a send failed before reaching the chain, or the chain says the nonce is used.
- ``fees(w3, policy)``: maxFeePerGas = min(cap, 2 x base fee + tip): room for the base fee to double before the
  transaction is stuck; a base fee already above the cap raises ``FeeTooHigh`` (nothing is sent).
- ``Submission``: one transaction (one nonce) and every hash it was sent under. ``wait`` polls all of them; when
  none is mined after ``resend_after_s`` it re-signs with fees x ``bump`` (at least the 10% a node requires to
  replace a pending transaction; never above the cap) and sends again. Whichever version is mined is the result:
  they share a nonce, so at most one of them ever is. On the local devnet a ``flush`` runs first: anvil in
  automine mode now and then leaves a ready transaction in its pool unmined (foundry-rs/foundry#10122), which no
  re-send moves; a block mined on purpose does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError

from proofmarket.core.errors import FeeTooHigh, TransactionNotMined
from proofmarket.core.profiles import GasPolicy

log = logging.getLogger(__name__)

MIN_BUMP = 1.1  # nodes replace a pending transaction only for at least 10% more (tip and fee cap)
POLL_S = 0.05  # first look for a receipt; the interval grows to a quarter of the block time


def fees(w3: Web3, policy: GasPolicy) -> dict[str, int]:
    """EIP-1559 fees for a new transaction under ``policy``; legacy chains (no base fee) get a gas price."""
    block = w3.eth.get_block("latest")
    base_fee = block.get("baseFeePerGas")
    tip = policy.priority_fee_wei
    with contextlib.suppress(Web3RPCError, ValueError):  # not every node answers eth_maxPriorityFeePerGas
        tip = max(tip, int(w3.eth.max_priority_fee))
    cap = policy.max_fee_wei
    if base_fee is None:
        price = min(cap, int(w3.eth.gas_price))
        return {"gasPrice": price}
    base = int(base_fee)
    if base + policy.priority_fee_wei > cap:
        raise FeeTooHigh(f"the chain's base fee is {base / 1e9:.3f} gwei, above the fee cap of "
                         f"{policy.max_fee_gwei} gwei: nothing was sent (raise the cap or wait)",
                         base_fee_wei=base, cap_wei=cap)
    tip = min(tip, cap - base)
    return {"maxFeePerGas": min(cap, 2 * base + tip), "maxPriorityFeePerGas": tip}


def bumped(tx_fees: dict[str, int], policy: GasPolicy) -> dict[str, int] | None:
    """The fees of a replacement, or None when the cap leaves no room for the 10% a replacement needs."""
    factor = max(policy.bump, MIN_BUMP)
    cap = policy.max_fee_wei
    if "gasPrice" in tx_fees:
        price = int(tx_fees["gasPrice"] * factor) + 1
        return {"gasPrice": price} if price <= cap else None
    max_fee = int(tx_fees["maxFeePerGas"] * factor) + 1
    tip = int(tx_fees["maxPriorityFeePerGas"] * factor) + 1
    if max_fee > cap:
        if cap < tx_fees["maxFeePerGas"] * MIN_BUMP:
            return None
        max_fee = cap
    return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": min(tip, max_fee)}


class Nonces:
    """The next nonce per (chain, account) in this process. A chain is named by its id *and* its genesis block
    (``ChainClient.chain_key``): two local devnets answer the same chain id 31337 with the same dev accounts, and
    a nonce in flight on one is not a nonce of the other.

    With no transaction of the account in flight here, the chain's pending count is the answer (a revert, a reorg
    or another process may have moved it either way). While some are in flight, the higher of the two: an RPC
    behind a load balancer may not count our last transaction yet."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[Hashable, str], threading.Lock] = {}
        self._next: dict[tuple[Hashable, str], int] = {}
        self._in_flight: dict[tuple[Hashable, str], int] = {}

    def lock(self, chain: Hashable, address: str) -> threading.Lock:
        """Held while a nonce is taken and its transaction first sent: sends of one account go out in order."""
        with self._guard:
            return self._locks.setdefault((chain, address.lower()), threading.Lock())

    def take(self, chain: Hashable, address: str, pending: Callable[[], int]) -> int:
        """The next nonce (call under ``lock``; ``done`` once its transaction is mined or given up)."""
        key = (chain, address.lower())
        with self._guard:
            in_flight = self._in_flight.get(key, 0)
            local = self._next.get(key, 0) if in_flight else 0
        nonce = max(local, pending())  # an RPC: another thread's ``done`` may run meanwhile
        with self._guard:
            self._next[key] = nonce + 1
            # counted from the live value: one written back from before the RPC would undo that ``done`` and keep the
            # account "in flight" for good (every later nonce from this cache, never from the chain again)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return nonce

    def done(self, chain: Hashable, address: str) -> None:
        key = (chain, address.lower())
        with self._guard:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)


NONCES = Nonces()


@dataclass
class Submission:
    """One transaction, by nonce, and the hashes of every version of it that was sent."""

    w3: Web3
    sender: LocalAccount
    tx: dict[str, Any]
    policy: GasPolicy
    hashes: list[str] = field(default_factory=list)
    resends: int = 0
    flush: Callable[[], None] | None = None  # the devnet's: mine what an automining anvil left in its pool

    @property
    def fees(self) -> dict[str, int]:
        return {k: int(self.tx[k]) for k in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas") if k in self.tx}

    def send(self) -> str:
        signed = self.sender.sign_transaction(self.tx)
        try:
            tx_hash = "0x" + bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction)).hex()
        except Web3RPCError as exc:
            if self.hashes and _replacement_refused(exc):  # an earlier version is still in the pool, or mined
                log.info("re-send of nonce %s refused (%s): waiting for the earlier version", self.tx["nonce"], exc)
                return self.hashes[-1]
            raise
        if tx_hash not in self.hashes:
            self.hashes.append(tx_hash)
        return tx_hash

    def wait(self, timeout: float, block_time_s: float) -> tuple[str, Any]:
        """The (hash, receipt) of whichever version is mined, re-sending with higher fees while none is.
        ``RPCUnavailable`` after ``timeout`` seconds without a receipt (the transaction may still be mined:
        its nonce is taken, a later send of this account waits behind it)."""
        start = last_send = time.monotonic()
        interval = POLL_S
        while True:
            for tx_hash in reversed(self.hashes):
                receipt = self._receipt(tx_hash)
                if receipt is not None:
                    return tx_hash, receipt
            now = time.monotonic()
            if now - start > timeout:
                raise TransactionNotMined(f"transaction nonce {self.tx['nonce']} was not mined in {timeout:.0f} s "
                                          f"({self._nonce_state()}; sent as {', '.join(self.hashes)})",
                                          hashes=list(self.hashes))
            if now - last_send >= self.policy.resend_after_s and self.resends < self.policy.max_resends:
                if self.flush is not None and self._next_in_line() and self._in_pool():
                    self.flush()
                    if any(self._receipt(h) is not None for h in self.hashes):
                        continue
                self._resend()
                last_send = time.monotonic()
            time.sleep(interval)
            interval = min(max(block_time_s / 4, POLL_S), interval * 2)

    def _resend(self) -> None:
        """Same nonce, higher fees (or the same ones when the transaction was dropped and the cap is reached)."""
        new_fees = bumped(self.fees, self.policy)
        if new_fees is None and self._in_pool():
            return  # at the cap and still pending: a copy at the same price would be refused; wait
        if new_fees is not None:
            self.tx.update(new_fees)
        self.resends += 1
        log.warning("transaction nonce %s not mined after %.0f s: sending it again with fees %s",
                    self.tx["nonce"], self.policy.resend_after_s, self.fees)
        self.send()

    def _count(self, block: str) -> int:
        return int(self.w3.eth.get_transaction_count(self.sender.address, block))  # type: ignore[arg-type]

    def _next_in_line(self) -> bool:
        """Whether every earlier nonce of the account is mined: only then can a block take this transaction."""
        return self._count("latest") == int(self.tx["nonce"])

    def _nonce_state(self) -> str:
        """Words for the timeout: why re-sending did not help (a used nonce or a gap never resolve by waiting)."""
        nonce = int(self.tx["nonce"])
        try:
            mined, pending = self._count("latest"), self._count("pending")
        except Exception:  # a diagnosis only: the timeout is raised all the same
            return "the account's nonces could not be read"
        said = f"the chain has mined nonces below {mined} of {self.sender.address}"
        if mined > nonce:
            return f"{said}: nonce {nonce} was used by another transaction, this one will never be mined"
        if mined < nonce:
            waiting = ("earlier ones are pending" if pending > nonce
                       else "a gap: an earlier nonce was never sent or was dropped")
            return f"{said}: {waiting}"
        return f"{said}: this one is next"

    def _in_pool(self) -> bool:
        for tx_hash in self.hashes:
            try:
                self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
                return True
            except TransactionNotFound:
                continue
        return False

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None


def _replacement_refused(exc: Web3RPCError) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("underpriced", "already known", "nonce too low", "known transaction"))
