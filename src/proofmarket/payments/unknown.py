"""The operator settles a payout or a credits refund whose outcome no machine may decide.

A transfer the node sent while its RPC failed (no hash known, or a crash before the record) stays held and marked
``outcome_unknown``: voiding it could pay twice, capturing it could book money that never left. The ledger check
names it; the operator reads the chain and says which it was:

    paid     the transaction that paid it (mined, successful, a USDC transfer from the node to the payee of the
             amount that the book does not already count for another transfer): the hold is captured with it
    not sent the node's account shows no such transfer: checked on chain (every token transfer from the node to
             the payee since the hold was written must be one the book holds), then the hold is voided (the payee
             is owed it again, or the credits are the wallet's again), with the operator's reason

``POST /v1/ledger/unknown/{ref}`` (admin) and ``proofmarket ledger resolve REF --paid TX | --not-sent REASON``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import UsdcToken
from proofmarket.core.errors import UsageError
from proofmarket.db.book import Book
from proofmarket.db.book_find import with_tx
from proofmarket.payments.credits.repo import CreditsRepo
from proofmarket.payments.reconcile import usdc_moves

CREDITS = "credits:"


def unknown_outcomes(book: Book) -> list[dict[str, Any]]:
    """The held transfers marked ``outcome_unknown``: what the operator has to settle."""
    return [{"ref": t.ref, "kind": t.kind, "rail": t.rail, "created_at": t.created_at.isoformat(),
             "postings": book.postings([t.id])[t.id], "memo": t.memo}
            for t in book.open_pending(limit=10_000) if (t.memo or {}).get("outcome_unknown")]


def resolve_unknown(book: Book, ref: str, *, paid_tx: str | None = None, not_sent: str | None = None,
                    client: ChainClient | None = None, usdc: str | None = None, sender: str | None = None
                    ) -> dict[str, Any]:
    """Capture (``paid_tx``, checked on chain) or void (``not_sent``: the reason) the held transfer ``ref``."""
    if (paid_tx is None) == (not_sent is None):
        raise UsageError("say either the transaction that paid it, or that it was not sent (with a reason)")
    held = book.transfer(ref)
    if held is None or held.phase != "pending" or book.closing(ref) is not None:
        raise UsageError(f"{ref} is no held transfer of this book (or it was settled already)", ref=ref)
    if not (held.memo or {}).get("outcome_unknown"):
        raise UsageError(f"{ref} is followed by the node (its transaction is known): nothing for an operator to say",
                         ref=ref)
    postings = book.postings([held.id])[held.id]
    to = next((acc.split(":", 1)[1] for acc, v in postings if v > 0 and acc.startswith("wallet:")), None)
    amount = sum(v for _, v in postings if v > 0)
    if not_sent is not None:
        if client is not None and usdc is not None and sender is not None and to is not None:
            _check_not_sent(book, client, usdc, sender, to, held.created_at.timestamp(), ref)
        if ref.startswith(CREDITS):
            CreditsRepo(book.db).refund_failed(ref[len(CREDITS):], f"operator: {not_sent}")
        else:
            book.void(ref, reason=f"operator: {not_sent}")
        return {"ref": ref, "outcome": "voided", "reason": not_sent}
    assert paid_tx is not None
    if client is None or usdc is None or sender is None:
        raise UsageError("this node takes no payments: there is no chain to read the transaction from")
    receipt = client.receipt(paid_tx)
    if receipt is None or receipt["status"] != 1:
        raise UsageError(f"{paid_tx} is not a mined, successful transaction on this chain", tx_hash=paid_tx)
    moved = usdc_moves(UsdcToken(client, usdc).contract, usdc, receipt).get((sender.lower(), to or ""), 0)
    if to is None or moved < amount:
        raise UsageError(f"{paid_tx} does not send {amount} USDC units from the node to {to}", tx_hash=paid_tx)
    booked = [t for t in with_tx(book, paid_tx) if t.ref != ref]
    already = sum(v for t in booked for acc, v in book.postings([t.id])[t.id] if v > 0 and acc == f"wallet:{to}")
    if already + amount > moved:
        raise UsageError(f"{paid_tx} is already booked for {', '.join(t.ref for t in booked)}: it sent {moved} USDC "
                         f"units to {to}, and the book counts {already} of them already; name the transaction that "
                         "paid this one", tx_hash=paid_tx, booked=[t.ref for t in booked])
    book.capture(ref, tx_hash=paid_tx)
    return {"ref": ref, "outcome": "captured", "tx_hash": paid_tx}


def _check_not_sent(book: Book, client: ChainClient, usdc: str, sender: str, to: str, since_s: float, ref: str) -> None:
    """Refuse ``--not-sent`` when the node's account sent the payee a token transfer, since the hold was written,
    in a transaction the book does not hold: that one may be this payout (resolve it with ``--paid``)."""
    token = UsdcToken(client, usdc).contract
    start = _block_at(client, since_s)
    logs = token.events.Transfer().get_logs(from_block=start, argument_filters={
        "from": client.w3.to_checksum_address(sender), "to": client.w3.to_checksum_address(to)})
    for event in logs:
        tx = "0x" + bytes(event["transactionHash"]).hex().removeprefix("0x")
        if not with_tx(book, tx):
            raise UsageError(f"the node's account sent {int(event['args']['value'])} USDC units to {to} in {tx} "
                             f"(block {event['blockNumber']}) since {ref} was held, and the book holds no transfer of "
                             f"that transaction: if it paid this one, resolve it with --paid {tx}", tx_hash=tx)


def _block_at(client: ChainClient, at_s: float, margin_s: float = 120.0) -> int:
    """The first block mined at or after ``at_s - margin_s`` (a binary search on block timestamps)."""
    low, high = 0, client.block_number()
    target = at_s - margin_s
    while low < high:
        middle = (low + high) // 2
        if client.timestamp(middle) < target:
            low = middle + 1
        else:
            high = middle
    return low


def write_off(book: Book, ref: str, reason: str, *, refused: Mapping[str, str],
              after_s: float | None) -> dict[str, Any]:
    """Write off a channel charge the node can no longer collect: its pending transfer (the payer's channel to what
    the node would owe the model's payee) is voided, one balanced entry, with the operator's reason. Only a charge
    of a channel the chain refused, or one older than ``after_s`` (one sweep interval): the sweep may still collect
    a younger one."""
    held = book.transfer(ref)
    if held is None or held.kind != "charge" or held.phase != "pending" or book.closing(ref) is not None:
        raise UsageError(f"{ref} is no open channel charge of this book (see the receivables of "
                         "'proofmarket ledger check')", ref=ref)
    channel = str((held.memo or {}).get("channel_id", "")).lower()
    age = time.time() - held.created_at.timestamp()
    if channel not in refused and (after_s is None or age <= after_s):
        raise UsageError(f"{ref} may still be collected (its channel is not refused and the charge is {age:.0f} s "
                         "old, within a sweep interval): nothing written off", ref=ref)
    book.void(ref, reason=f"operator: {reason}", note={"written_off": True})
    return {"ref": ref, "outcome": "written off", "reason": reason, "channel_id": channel}
