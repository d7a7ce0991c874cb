"""What a call paid on chain from its payer to its payee settles into, for every rail that moves the money itself
(x402 ``exact``, ``upto``): the node's signed receipt, the paid bundle, the split to release, one book capture."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from proofmarket.db.book import Accounts, Transfer
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket, store_paid_bundle
from proofmarket.store import ArtifactStore
from proofmarket.systems.receipts import sign_receipt


def captured(node: LocalAccount, store: ArtifactStore, rail: str, ref: str, ticket: Ticket, proof: ProofOutcome, *,
             scheme: str, network: str, asset: str, payer: str, pay_to: str, amount: int, tx_hash: str,
             extra: dict[str, Any] | None = None) -> Settlement:
    """``amount`` moved from ``payer`` to ``pay_to`` in ``tx_hash`` for this call: the receipt binds it to the
    bundle, the paid bundle is stored, and the book records one capture (none for nothing moved) with the call's
    state change. ``extra``: the rail's own fields of the answer's ``payment``."""
    receipt = sign_receipt(
        node, model_id=proof.model_id, input_commitment=proof.input_commitment, output_hash=proof.output_hash,
        bundle_cid=proof.bundle_cid, network=network, transaction=tx_hash, payer=payer, amount=amount,
        resource_url=str(ticket.doc.get("resource", "")))
    payment: dict[str, Any] = {"scheme": scheme, "network": network, "asset": asset, "amount": str(amount),
                               **(extra or {}), "payer": payer, "pay_to": pay_to, "transaction": tx_hash}
    store_paid_bundle(store, proof, payment, receipt)
    split = ticket.doc.get("split")
    if split:
        payment["split_onchain_id"] = str(split)  # released by InferenceMarket.releaseSplit (an after-capture hook)
    capture = Transfer.move(ref, "capture", rail, Accounts.wallet(payer), Accounts.wallet(pay_to), amount,
                            model_id=proof.model_id, payer=payer, tx_hash=tx_hash or None,
                            memo={"job_id": proof.job_id})
    return Settlement(payment=payment, receipt=receipt, transfers=(capture,) if amount else ())
