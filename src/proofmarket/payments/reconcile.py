"""Reconciliation: the book against itself and against the chain, every difference named.

    the book       every transfer sums to zero, every account's running balance is its postings, no account but a
                   wallet below zero (``Book.check``)
    the chain      every posted transfer that names a transaction is found in that transaction's USDC ``Transfer``
                   events: an x402 capture (payer -> payee, the amount), a purchase (payer -> the node), a payout
                   (the node -> the payee, the sum of the payout's transfers), a split's release (its splitter -> the
                   market), a market's withdrawal (the market -> the payee); an escrow fulfilment's credits are
                   its ``RequestFulfilled`` event's; a channel's charges captured by sweeps never exceed its claimed
                   total on chain; a transaction that reverted or that the chain does not know is a difference too
    receivables    charges served on credit and not collected: a channel charge pending longer than
                   ``receivable_after_s`` (one sweep interval) is a difference, and so is every pending charge of a
                   channel the chain refused (it can no longer be collected: ``proofmarket ledger write-off REF``
                   voids it, one balanced entry, after the operator has read the chain)
    solvency       the node account's token balance against what the book says it holds (for others: credits,
                   passes, what payees and the platform are owed; and the node's own earnings, which are not cover
                   for the rest): a shortfall is a difference
    chain -> book  every token transfer from the node's account since the book's chain tail cursor is in the book
                   (``chain_tail.py``, run by ``Money.check``): one that is not is a difference, and the node pays
                   nothing until ``proofmarket ledger replay`` books it
    blocked        payees the token refuses (their payouts skipped with a backoff): shown, not a difference (the
                   money is owed and kept; every other payee is paid)
``proofmarket ledger check [--from-block N]`` prints the report; the node's settler runs it on a schedule and exports
``proofmarket_ledger_differences`` (an alert rule fires on any) and ``proofmarket_ledger_shortfall_atomic``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from web3.logs import DISCARD

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import UsdcToken
from proofmarket.db.book import Accounts, Book
from proofmarket.db.book_tables import TransferRow

# checked against their tx's USDC transfers
CHAIN_KINDS = ("capture", "purchase", "payout", "refund", "deposit", "release", "withdrawal")
EVENT_KINDS = ("fulfil",)  # checked against the market's RequestFulfilled event (credits, not transfers)


@dataclass
class Reconciliation:
    differences: list[str] = field(default_factory=list)
    transfers_checked: int = 0
    transactions_checked: int = 0
    receivables: list[dict[str, Any]] = field(default_factory=list)  # served, not collected (pending charges)
    solvency: dict[str, Any] | None = None  # the node account's balance against what it holds for others
    blocked: dict[str, dict[str, Any]] = field(default_factory=dict)  # payees the token refuses
    tail: dict[str, Any] | None = None  # chain -> book: the node account's transfers the book does not hold

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def shortfall(self) -> int:
        return int(self.solvency["shortfall"]) if self.solvency else 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "differences": self.differences, "transfers_checked": self.transfers_checked,
                "transactions_checked": self.transactions_checked, "receivables": self.receivables,
                "solvency": self.solvency, "blocked_payees": self.blocked, "tail": self.tail}


def reconcile(book: Book, client: ChainClient | None = None, usdc: str | None = None, node: str | None = None,
              from_block: int = 0, *, receivable_after_s: float | None = None,
              refused: Callable[[], Mapping[str, str]] | None = None) -> Reconciliation:
    """The book's own rules, its receivables (``refused``: the channels the chain refused, id -> why), then (with a
    chain) every posted transfer of ``CHAIN_KINDS`` against its transaction's token transfers (those mined at or
    after ``from_block``) and the node's solvency."""
    report = Reconciliation(differences=book.check())
    _check_unknown_sends(book, report)
    _check_receivables(book, report, receivable_after_s, refused() if refused is not None else {})
    if client is None or usdc is None or node is None:
        return report
    _check_solvency(book, client, usdc, node, report)
    expected: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for transfer, legs in _posted(book, CHAIN_KINDS):
        if not transfer.tx_hash:
            continue
        source = next((a for a, v in legs if v < 0), None)
        for account, amount in legs:
            if amount > 0 and source is not None:
                expected[transfer.tx_hash.lower()][(_address(source, node), _address(account, node))] += amount
        report.transfers_checked += 1
    _check_fulfilments(book, client, from_block, report)
    _check_claims(book, client, report)
    token = UsdcToken(client, usdc).contract
    for tx, moves in sorted(expected.items()):
        receipt = client.receipt(tx)
        if receipt is None:
            report.differences.append(f"transaction {tx}: in the book, not found on chain")
            continue
        if int(receipt["blockNumber"]) < from_block:
            continue
        report.transactions_checked += 1
        if int(receipt["status"]) != 1:
            report.differences.append(f"transaction {tx}: in the book, reverted on chain")
            continue
        seen = usdc_moves(token, usdc, receipt)
        for (source, target), amount in sorted(moves.items()):
            if seen.get((source, target), 0) != amount:
                report.differences.append(f"transaction {tx}: the book moves {amount} from {source} to {target}, the "
                                          f"chain {seen.get((source, target), 0)}")
    return report


def usdc_moves(token: Any, usdc: str, receipt: Any) -> dict[tuple[str, str], int]:
    """What the USDC contract ``usdc`` moved in a transaction: (from, to) -> atomic units, lower-case addresses."""
    seen: dict[tuple[str, str], int] = defaultdict(int)
    for event in token.events.Transfer().process_receipt(receipt, errors=DISCARD):
        if str(event["address"]).lower() == usdc.lower():
            seen[(str(event["args"]["from"]).lower(), str(event["args"]["to"]).lower())] += int(event["args"]["value"])
    return seen


def _check_unknown_sends(book: Book, report: Reconciliation, older_than_s: float = 600.0) -> None:
    """Payouts and refunds held with no known transaction for a while: their transfer may have left (a crash or an
    RPC failure between the send and its record), so no machine voids them; an operator reads the chain."""
    now = time.time()
    for pending in [p for kind in ("payout", "refund") for p in book.open_pending(kind)]:
        memo = pending.memo or {}
        if memo.get("sent_txs") and not memo.get("outcome_unknown"):
            continue
        created = pending.created_at.timestamp()
        if memo.get("outcome_unknown") or now - created > older_than_s:
            report.differences.append(f"{pending.kind} {pending.ref}: held since {pending.created_at.isoformat()} with "
                                      "no known transaction: read the node account's transfers on chain, then "
                                      "capture or void it")


def _check_receivables(book: Book, report: Reconciliation, after_s: float | None, refused: Mapping[str, str]) -> None:
    """Channel charges served and not collected (pending until their claim): each channel's are listed; those of a
    channel the chain refused, or older than ``after_s`` (one sweep interval: the sweep should have claimed them),
    are differences."""
    now = time.time()
    by_channel: dict[str, list[TransferRow]] = defaultdict(list)
    for pending in book.open_pending("charge", limit=100_000):
        by_channel[str((pending.memo or {}).get("channel_id", "")).lower()].append(pending)
    for channel_id, charges in sorted(by_channel.items()):
        legs = book.postings(c.id for c in charges)
        amount = sum(a for c in charges for _, a in legs[c.id] if a > 0)
        oldest = min(c.created_at for c in charges)
        why = refused.get(channel_id)
        late = after_s is not None and now - oldest.timestamp() > after_s
        report.receivables.append({"channel_id": channel_id, "charges": len(charges), "amount": str(amount),
                                   "oldest": oldest.isoformat(), "refused": why, "late": late,
                                   "refs": [c.ref for c in charges][:20]})
        if why:
            report.differences.append(f"channel {channel_id}: {len(charges)} charges ({amount} atomic units) can no "
                                      f"longer be collected (the chain refused the channel: {why}); write them off "
                                      "with `proofmarket ledger write-off REF`")
        elif late:
            report.differences.append(f"channel {channel_id}: {len(charges)} charges ({amount} atomic units) served "
                                      f"and not collected since {oldest.isoformat()}, longer than a sweep interval "
                                      f"({after_s:g} s)")


def _check_solvency(book: Book, client: ChainClient, usdc: str, node: str, report: Reconciliation) -> None:
    """What the node's account holds on chain against what the book says it holds: for others (credits, passes,
    what payees, owners or splitters, and the platform are owed) and the node's own earnings (its payee account).
    The node's own money is not cover for what it owes others: a payment the book forgot (a restore) shows as a
    shortfall even on a node whose earnings would hide it."""
    owed: dict[str, int] = defaultdict(int)
    for account, balance in book.accounts().items():
        if Accounts.is_external(account) or account.startswith(Accounts.WITHDRAWABLE):
            continue
        if balance.posted > 0:
            owed["node" if account == Accounts.payee(node) else account.split(":", 1)[0]] += balance.posted
    try:
        held = UsdcToken(client, usdc).balance_of(node)
    except Exception as exc:  # the chain is away: named, not guessed
        report.differences.append(f"solvency: cannot read the node account's token balance ({exc})")
        return
    total = sum(owed.values())
    report.solvency = {"account": node.lower(), "token_balance": str(held), "owed": str(total),
                       "owed_by_kind": {k: str(v) for k, v in sorted(owed.items())},
                       "shortfall": str(max(0, total - held)), "solvent": held >= total}
    if held < total:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(owed.items()))
        report.differences.append(f"solvency: the node account {node.lower()} holds {held} atomic units and the "
                                  f"book owes {total} to others ({kinds})")


def _check_fulfilments(book: Book, client: ChainClient, from_block: int, report: Reconciliation) -> None:
    """An escrow fulfilment credits the owner, the prover and the platform inside the market (no token moves):
    the book's postings must be the amounts its ``RequestFulfilled`` event names."""
    events = client.w3.eth.contract(abi=load_artifact("InferenceMarket").abi).events.RequestFulfilled()
    for transfer, legs in _posted(book, EVENT_KINDS):
        if not transfer.tx_hash:
            continue
        report.transfers_checked += 1
        receipt = client.receipt(transfer.tx_hash)
        if receipt is None or int(receipt["status"]) != 1:
            report.differences.append(f"fulfilment {transfer.ref}: its transaction {transfer.tx_hash} is not a mined "
                                      "success on chain")
            continue
        if int(receipt["blockNumber"]) < from_block:
            continue
        report.transactions_checked += 1
        paid = sum(a for _, a in legs if a > 0)
        found = [e for e in events.process_receipt(receipt, errors=DISCARD)
                 if int(e["args"]["requestId"]) == int((transfer.memo or {}).get("request_id", -1))]
        shares = ("ownerAmount", "proverAmount", "platformFee")
        onchain = sum(int(found[0]["args"][k]) for k in shares) if found else None
        if onchain != paid:
            report.differences.append(f"fulfilment {transfer.ref}: the book credits {paid}, the chain's "
                                      f"RequestFulfilled {onchain}")


def _check_claims(book: Book, client: ChainClient, report: Reconciliation) -> None:
    """Channel charges the book counts as claimed (captured by a sweep) must be claimed on chain: per channel, the
    captured charges never exceed the contract's ``totalClaimed`` (less is a sweep still due: charges a refund
    claimed, or a sweep in progress)."""
    from proofmarket.chain.channels import channel_state

    captured: dict[str, int] = defaultdict(int)
    for transfer, legs in _posted(book, ("charge",)):
        channel = (transfer.memo or {}).get("channel_id")
        if channel:
            captured[str(channel)] += sum(a for _, a in legs if a > 0)
    for channel_id, amount in sorted(captured.items()):
        report.transfers_checked += 1
        try:
            claimed = channel_state(client, channel_id).total_claimed
        except Exception as exc:  # no channel contract here, or the chain is away: named, not guessed
            report.differences.append(f"channel {channel_id}: cannot read its claimed total ({exc})")
            continue
        if amount > claimed:
            report.differences.append(f"channel {channel_id}: the book counts {amount} claimed, the chain {claimed}")


def _posted(book: Book, kinds: tuple[str, ...]) -> list[tuple[TransferRow, list[tuple[str, int]]]]:
    """The posted transfers of ``kinds`` with their postings (one read of each table)."""
    transfers = [t for t in book.transfers(kinds=kinds, limit=1_000_000) if t.phase in ("single", "post")]
    legs = book.postings(t.id for t in transfers)
    return [(t, legs[t.id]) for t in transfers]


def _address(account: str, node: str) -> str:
    """The on-chain address behind a book account: a wallet is itself; what a market credits a payee is in the
    market contract; every other account (credits, a pass, what the node owes a payee) is money in the node's own
    account."""
    if Accounts.is_external(account):
        return Accounts.address_of(account)
    if account.startswith(Accounts.WITHDRAWABLE):
        return account.split(":")[1]
    return node.lower()
