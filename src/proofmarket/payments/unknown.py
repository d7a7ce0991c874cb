"""The operator settles a payout or a credits refund whose outcome no machine may decide.

A transfer the node sent while its RPC failed (no hash known, or a crash before the record) stays held and marked
``outcome_unknown``: voiding it could pay twice, capturing it could book money that never left. The ledger check
names it; the operator reads the chain and says which it was:

    paid     the transaction that paid it (mined, successful, a USDC transfer from the node to the payee of the
             amount): the hold is captured with that hash
    not sent the node's account shows no such transfer: the hold is voided (the payee is owed it again, or the
             credits are the wallet's again), with the operator's reason

``POST /v1/ledger/unknown/{ref}`` (admin) and ``proofmarket ledger resolve REF --paid TX | --not-sent REASON``.
"""

from __future__ import annotations

from typing import Any

from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import UsdcToken
from proofmarket.core.errors import UsageError
from proofmarket.db.book import Book
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
    if not_sent is not None:
        if ref.startswith(CREDITS):
            CreditsRepo(book.db).refund_failed(ref[len(CREDITS):], f"operator: {not_sent}")
        else:
            book.void(ref, reason=f"operator: {not_sent}")
        return {"ref": ref, "outcome": "voided", "reason": not_sent}
    assert paid_tx is not None
    if client is None or usdc is None or sender is None:
        raise UsageError("this node takes no payments: there is no chain to read the transaction from")
    postings = book.postings([held.id])[held.id]
    to = next((acc.split(":", 1)[1] for acc, v in postings if v > 0 and acc.startswith("wallet:")), None)
    amount = sum(v for _, v in postings if v > 0)
    receipt = client.receipt(paid_tx)
    if receipt is None or receipt["status"] != 1:
        raise UsageError(f"{paid_tx} is not a mined, successful transaction on this chain", tx_hash=paid_tx)
    moved = usdc_moves(UsdcToken(client, usdc).contract, usdc, receipt).get((sender.lower(), to or ""), 0)
    if to is None or moved < amount:
        raise UsageError(f"{paid_tx} does not send {amount} USDC units from the node to {to}", tx_hash=paid_tx)
    book.capture(ref, tx_hash=paid_tx)
    return {"ref": ref, "outcome": "captured", "tx_hash": paid_tx}
