"""The book's chain tail: what the node's account did on chain that its book does not hold.

A node whose book is older than the chain (restored from an older backup, or a database that lost its last writes)
would pay again what it paid after the book's last known block: a payee's payout, a wallet's credits refund. The tail
reads the token's ``Transfer`` events from and to the node's account since its cursor (``watcher_cursors``, named
``book-tail:<chain id>:<node>``; a book without one resumes at its newest transaction) and sorts them:

    booked     a transfer whose transaction the book names, or that an open payout or refund hold of the same
               payee and amount is waiting for (sent, its hash not recorded yet): the book's
    outgoing   a transfer from the node's account the book does not hold: until it is booked the node pays nothing
               (payouts are held and refunds refused with ``book_behind_chain``); the ledger check names each one
               and ``proofmarket ledger replay`` books it
    incoming   a transfer to the node's account the book does not hold: an operator funding the account, a deposit
               its wallet has not claimed (it still can), a purchase or a capture a restore lost: listed, never
               blocking
    own        moves between the node's account and the node's own contracts (stakes in the market or the court)
The cursor moves past the blocks read once nothing outgoing is left unbooked in them.

Replaying books an outgoing transfer of V to address A as what the book says the node owed A, in this order: A's
payee account (its models' shares: kind ``payout``), then A's credits (kind ``refund``); what the book did not owe A
(revenue a restore lost, or an operator's own transfer) comes from the node's own funds (``wallet:<node>``, kind
``payout``, ``beyond_book`` in its memo). Each is one balanced transfer naming the transaction, so the ledger check
finds the book and the chain agree.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import BookBehindChain
from proofmarket.db.book import Accounts, Book, Transfer
from proofmarket.db.book_find import known_txs, latest_tx
from proofmarket.db.cursors import Cursors

log = logging.getLogger(__name__)

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
RAIL = "replay"


@dataclass(frozen=True)
class Move:
    """One token transfer from or to the node's account, as the chain has it."""

    tx: str
    block: int
    log_index: int
    source: str
    target: str
    amount: int

    def to_json(self) -> dict[str, Any]:
        return {"tx": self.tx, "block": self.block, "log_index": self.log_index, "from": self.source,
                "to": self.target, "amount": str(self.amount)}


@dataclass
class TailReport:
    from_block: int
    to_block: int
    outgoing: list[Move] = field(default_factory=list)  # sent by the node's account, not in the book
    incoming: list[Move] = field(default_factory=list)  # received, not in the book (never blocking)

    def differences(self) -> list[str]:
        return [f"transaction {m.tx} (block {m.block}): the chain moves {m.amount} from the node account to "
                f"{m.target}, the book does not hold it (a restore from an older backup?): the node pays nothing "
                "until `proofmarket ledger replay` books it" for m in self.outgoing]

    def to_json(self) -> dict[str, Any]:
        return {"from_block": self.from_block, "to_block": self.to_block,
                "outgoing": [m.to_json() for m in self.outgoing], "incoming": [m.to_json() for m in self.incoming]}


class ChainTail:
    def __init__(self, book: Book, client: ChainClient, usdc: str, node: str, own: tuple[str, ...] = ()) -> None:
        self.book, self.client, self.usdc, self.node = book, client, usdc, node.lower()
        self.own = {a.lower() for a in own if a}  # the node's own contracts: stakes move there and back
        self.cursor = f"book-tail:{client.chain_id}:{self.node}"
        self.held: list[Move] = []  # outgoing transfers the book does not hold, at the last scan
        self._scanned = False
        self._lock = threading.Lock()

    # --- the gate every payer passes ----------------------------------------------------------
    def gate(self) -> None:
        """Before the node pays anyone: the chain read once since start (then at every ledger check); refused while
        the node's account sent anything the book does not hold."""
        with self._lock:
            if not self._scanned:
                self.scan()
        if self.held:
            raise BookBehindChain(f"the node account sent {len(self.held)} token transfers its book does not hold "
                                  f"(the first in {self.held[0].tx}): the node pays nothing until an operator books "
                                  "them (`proofmarket ledger replay`; `proofmarket ledger check` names them)",
                                  transactions=[m.tx for m in self.held][:20])

    # --- reading the chain ----------------------------------------------------------------------
    def scan(self, from_block: int | None = None) -> TailReport:
        """The node account's transfers the book does not hold, from ``from_block`` (default: the cursor) to the
        head; the cursor moves on when nothing outgoing is left unbooked (not with an explicit ``from_block``)."""
        head = self.client.block_number()
        start = self._start(head) if from_block is None else from_block
        report = TailReport(start, head)
        moves = self._moves(start, head) if start <= head else []
        known = known_txs(self.book, {m.tx for m in moves})
        waiting = self._held_for()
        for move in moves:
            if move.tx in known or self.own & {move.source, move.target}:
                continue
            if move.source == self.node:
                if waiting.get((move.target, move.amount)):
                    continue  # an open hold sent it: its payer records the hash (or the confirm pass finds it)
                report.outgoing.append(move)
            elif move.target == self.node:
                report.incoming.append(move)
        if from_block is None:  # a scan of another range (ledger check --from-block) neither holds nor releases
            self.held, self._scanned = list(report.outgoing), True
            if not report.outgoing:
                Cursors(self.book.db).save(self.cursor, head + 1)
        for move in report.incoming:
            log.warning("the node account received %s in %s from %s, which its book does not hold (a funding, an "
                        "unclaimed deposit, or a purchase a restore lost)", move.amount, move.tx, move.source)
        return report

    def _start(self, head: int) -> int:
        at, _ = Cursors(self.book.db).at(self.cursor)
        if at is not None:
            return at
        tx = latest_tx(self.book)  # a book from before the tail: resume where its newest transaction is
        receipt = self.client.receipt(tx) if tx else None
        return int(receipt["blockNumber"]) if receipt is not None else head + 1

    def _moves(self, start: int, end: int) -> list[Move]:
        topic = "0x" + "0" * 24 + self.node[2:]
        step = max(1, self.client.profile.log_range)
        seen: dict[tuple[str, int], Move] = {}
        for low in range(start, end + 1, step):
            high = min(end, low + step - 1)
            for topics in ([TRANSFER_TOPIC, topic], [TRANSFER_TOPIC, None, topic]):
                for entry in self.client.w3.eth.get_logs({
                        "address": self.client.w3.to_checksum_address(self.usdc), "fromBlock": low, "toBlock": high,
                        "topics": topics}):
                    move = _move(entry)
                    seen[(move.tx, move.log_index)] = move
        return sorted(seen.values(), key=lambda m: (m.block, m.log_index))

    def _held_for(self) -> dict[tuple[str, int], list[str]]:
        """Open payout and refund holds with no transaction noted, by (payee, amount): a payout sends one
        transfer per batch (the sum of its models' holds)."""
        out: dict[tuple[str, int], list[str]] = {}
        batches: dict[str, list[Any]] = {}
        for kind in ("payout", "refund"):
            for pending in self.book.open_pending(kind, limit=100_000):
                if (pending.memo or {}).get("sent_txs"):
                    continue
                batches.setdefault(str((pending.memo or {}).get("batch") or pending.ref), []).append(pending)
        for rows in batches.values():
            legs = self.book.postings(r.id for r in rows)
            target = next((a for r in rows for a, v in legs[r.id] if v > 0 and Accounts.is_external(a)), None)
            if target is not None:
                amount = sum(v for r in rows for _, v in legs[r.id] if v > 0)
                out.setdefault((Accounts.address_of(target), amount), []).extend(r.ref for r in rows)
        return out

    # --- booking what the chain did -------------------------------------------------------------
    def replay(self) -> dict[str, Any]:
        """Book every outgoing transfer the book does not hold (as the module says), then read the chain again:
        {"booked": [...], "incoming": [...], "held": [...]} (held: what is still not booked)."""
        with self._lock:
            report = self.scan()
            booked = []
            for move in report.outgoing:
                booked.append({"tx": move.tx, "to": move.target, "amount": str(move.amount),
                               "as": self._book(move)})
            again = self.scan()
        for entry in booked:
            log.warning("booked transfer %s of %s to %s from the chain: %s", entry["tx"], entry["amount"],
                        entry["to"], entry["as"])
        return {"booked": booked, "incoming": [m.to_json() for m in report.incoming],
                "held": [m.to_json() for m in again.outgoing]}

    def _book(self, move: Move) -> dict[str, str]:
        left, parts = move.amount, {}
        ref = f"replay:{move.tx}:{move.log_index}"
        memo = {"replayed": True, "block": move.block}
        payee = Accounts.payee(move.target)
        for model_id, owed in sorted(self.book.by_model(payee).items(), key=lambda m: str(m[0])):
            take = min(left, owed, self.book.balance(payee).available)
            if take > 0:
                self.book.post(Transfer.move(f"{ref}:payout:{model_id or '-'}", "payout", RAIL, payee,
                                             Accounts.wallet(move.target), take, model_id=model_id,
                                             tx_hash=move.tx, memo=memo))
                parts[f"payout:{model_id or '-'}"] = str(take)
                left -= take
        credits = Accounts.credits(move.target)
        take = min(left, self.book.balance(credits).available)
        if take > 0:
            self.book.post(Transfer.move(f"{ref}:refund", "refund", RAIL, credits, Accounts.wallet(move.target),
                                         take, payer=move.target, tx_hash=move.tx, memo=memo))
            parts["refund"] = str(take)
            left -= take
        if left > 0:
            self.book.post(Transfer.move(f"{ref}:own", "payout", RAIL, Accounts.wallet(self.node),
                                         Accounts.wallet(move.target), left, tx_hash=move.tx,
                                         memo={**memo, "beyond_book": True}))
            parts["beyond_book"] = str(left)
        return parts


def _move(entry: Any) -> Move:
    """A raw ``Transfer(address indexed from, address indexed to, uint256 value)`` log."""
    topics = entry["topics"]
    tx = entry["transactionHash"]
    return Move(tx=("0x" + bytes(tx).hex()) if not isinstance(tx, str) else tx.lower(),
                block=int(entry["blockNumber"]), log_index=int(entry["logIndex"]),
                source="0x" + bytes(topics[1])[-20:].hex(), target="0x" + bytes(topics[2])[-20:].hex(),
                amount=int.from_bytes(bytes(entry["data"]), "big"))
