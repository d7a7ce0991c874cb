"""The market contract's payouts in the book: what ``InferenceMarket`` credits each payee (withdrawable) and what it
paid them (withdrawn), recorded from its events in log order by the node that follows the market (the escrow
watcher, one node of a database at a time).

    RequestFulfilled    wallet:<consumer> -> withdrawable owner, prover, platform   kind ``fulfil`` (the escrow's ref)
    SplitReleased       wallet:<splitter> -> withdrawable owner, prover, platform   kind ``release``
    Withdrawal          withdrawable:<payee> -> wallet:<payee>                       kind ``withdrawal``
    PlatformWithdrawal  withdrawable:platform -> wallet:<to>                         kind ``withdrawal``
    WithdrawalSkipped   nothing moves: the amount stays withdrawable (a token that refuses the payee)

Payouts are pulled: a release or a fulfilment only credits, and each payee's ``withdraw`` (or anyone's
``withdrawMany`` for it) pays what is withdrawable; a payee the token refuses stays withdrawable and never blocks
the others. A withdrawal of more than the book holds for the payee (credited before this book followed the market,
or by an event it does not book: a slash paid to the platform) takes the rest from ``wallet:<market>``, said in its
memo. Each transfer's ref names its log (chain, transaction, log index): an event read twice is booked once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from proofmarket.db.book import Accounts, Book, Transfer

log = logging.getLogger(__name__)

BOOKED_EVENTS = ("RequestFulfilled", "SplitReleased", "Withdrawal", "PlatformWithdrawal")
PLATFORM = "platform"


class ChainEvent(Protocol):
    """What the book reads of a decoded log (``proofmarket.chain.ChainEvent`` has it)."""

    @property
    def event(self) -> str: ...
    @property
    def args(self) -> Mapping[str, Any]: ...
    @property
    def tx_hash(self) -> str: ...
    @property
    def log_index(self) -> int: ...


def fulfilment_ref(chain_id: int, market: str, request_id: int) -> str:
    return f"escrow:{chain_id}:{market.lower()}:{request_id}"


def credit(ref: str, kind: str, rail: str, source: str, market: str, shares: dict[str, int], *,
           model_id: str | None = None, payer: str | None = None, tx_hash: str | None = None,
           memo: dict[str, Any] | None = None) -> Transfer:
    """``source`` -> each payee's withdrawable balance on ``market`` (``shares``: payee address or ``platform`` ->
    atomic units; a payee credited twice, an owner who also proved, gets one posting)."""
    legs: dict[str, int] = {}
    for payee, amount in shares.items():
        if amount:
            account = Accounts.withdrawable(market, payee)
            legs[account] = legs.get(account, 0) + amount
    return Transfer(ref, kind, rail, ((source, -sum(legs.values())), *sorted(legs.items())), model_id=model_id,
                    payer=payer, tx_hash=tx_hash, memo=memo)


def fulfilment(chain_id: int, market: str, request_id: int, consumer: str, owner: str, prover: str,
               amounts: tuple[int, int, int], *, model_id: str | None = None, tx_hash: str | None = None) -> Transfer:
    """An escrow request fulfilled: the consumer's escrowed price credited by the market to the model's owner, the
    prover and the platform (``amounts``: owner, prover, fee), as its ``RequestFulfilled`` event says."""
    owner_amount, prover_amount, fee = amounts
    return credit(fulfilment_ref(chain_id, market, request_id), "fulfil", "escrow", Accounts.wallet(consumer),
                  market, {owner: owner_amount, prover: prover_amount, PLATFORM: fee}, model_id=model_id,
                  payer=consumer, tx_hash=tx_hash, memo={"request_id": request_id})


class MarketBook:
    """Books the market's credit and payout events (``record``), one transfer per log.

    ``request(request_id)`` -> (consumer, owner) as the request snapshotted them; ``splitter(model_key, prover)``
    -> the revenue splitter's address; ``model_of(request_id)`` -> the node's model id for a request it follows
    (None for another node's)."""

    def __init__(self, book: Book, chain_id: int, market: str, request: Callable[[int], tuple[str, str]],
                 splitter: Callable[[bytes, str], str], model_of: Callable[[int], str | None]) -> None:
        self.book, self.chain_id, self.market = book, chain_id, market.lower()
        self.request, self.splitter, self.model_of = request, splitter, model_of

    def record(self, event: ChainEvent) -> Transfer | None:
        """Book ``event`` when it moves value on the market (else None); idempotent per log."""
        name, args = event.event, event.args
        if name not in BOOKED_EVENTS:
            return None
        if name == "RequestFulfilled":
            request_id = int(args["requestId"])
            consumer, owner = self.request(request_id)
            transfer = fulfilment(self.chain_id, self.market, request_id, consumer, owner, str(args["prover"]),
                                  (int(args["ownerAmount"]), int(args["proverAmount"]), int(args["platformFee"])),
                                  model_id=self.model_of(request_id), tx_hash=event.tx_hash)
        elif name == "SplitReleased":
            splitter = self.splitter(bytes(args["modelId"]), str(args["prover"]))
            transfer = credit(self._ref("release", event), "release", "x402", Accounts.wallet(splitter), self.market,
                              {str(args["owner"]): int(args["ownerAmount"]),
                               str(args["prover"]): int(args["proverAmount"]), PLATFORM: int(args["platformFee"])},
                              tx_hash=event.tx_hash, memo={"model_key": "0x" + bytes(args["modelId"]).hex()})
        elif name == "Withdrawal":
            transfer = self._withdrawal(event, str(args["account"]), str(args["account"]), int(args["amount"]))
        else:
            transfer = self._withdrawal(event, PLATFORM, str(args["to"]), int(args["amount"]))
        if not any(amount for _, amount in transfer.postings):
            return None
        self.book.post(transfer)
        return transfer

    def _withdrawal(self, event: ChainEvent, payee: str, to: str, amount: int) -> Transfer:
        """The withdrawal's legs, split by what the book credited the payee before it; a log booked before keeps
        the legs it was booked with (read again, the payee's credit is spent: the split would differ)."""
        ref = self._ref("withdrawal", event)
        booked = self.book.transfer(ref)
        if booked is not None:
            legs = self.book.postings([booked.id])[booked.id]
            return Transfer(ref, booked.kind, booked.rail, tuple(legs), tx_hash=booked.tx_hash, memo=booked.memo)
        account = Accounts.withdrawable(self.market, payee)
        known = min(amount, max(0, self.book.balance(account).available))
        legs = [(account, -known), (Accounts.wallet(self.market), -(amount - known)), (Accounts.wallet(to), amount)]
        memo = {"unbooked_credit": amount - known} if amount > known else None
        if memo:
            log.info("withdrawal of %s to %s: %s of it was credited before this book followed the market", amount,
                     to, amount - known)
        return Transfer(ref, "withdrawal", "escrow", tuple((a, v) for a, v in legs if v), tx_hash=event.tx_hash,
                        memo=memo)

    def _ref(self, kind: str, event: ChainEvent) -> str:
        return f"{kind}:{self.chain_id}:{event.tx_hash.lower()}:{event.log_index}"
