"""The consumer's side of the market: commit to an input and escrow the price (InferenceMarket for proven models,
AttestationCourt for attested causal LMs), then take the escrow back after a deadline nobody met."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from proofmarket import models
from proofmarket.chain.client import TxResult
from proofmarket.chain.home import RequestRecord
from proofmarket.chain.types import RequestSubmitted
from proofmarket.core.errors import UsageError
from proofmarket.onchain.base import MarketBase
from proofmarket.onchain.results import RefundResult, RequestReceipt
from proofmarket.systems.attested import instances
from proofmarket.systems.ezkl.commitment import input_commitment
from proofmarket.systems.ezkl.salt import check_salt

PAYMENTS = ("approve", "eip3009")
MIN_TTL_S, MAX_TTL_S = 60, 30 * 24 * 3600  # the market takes deadlines up to 30 days ahead


class ConsumerRole(MarketBase):
    def request(self, model_id: str, inputs_doc: Any, *, salt: list[int] | None = None, ttl_s: int | None = None,
                deadline: int | None = None, payment: str = "approve", owner: str | None = None,
                max_price: int | None = None) -> RequestReceipt:
        """Commit to ``inputs_doc`` (with a salt for a hashed input: given or drawn here), escrow the price
        with ``approve`` + ``transferFrom`` or an EIP-3009 signature, and store the input for the prover.

        The request goes to the model listed by ``owner`` (default: this market's owner account), and only
        after its registry entry was checked against the local manifest (``check_entry``: vk digest, ONNX
        and settings hashes, instance layout, verifier code, price at most ``max_price``)."""
        if payment not in PAYMENTS:
            raise UsageError(f"payment must be one of {', '.join(PAYMENTS)}, not {payment!r}")
        if self.attested_manifest(model_id) is not None:  # a generate request {prompt, max_tokens, ...}
            return self.request_attested(model_id, inputs_doc, ttl_s=ttl_s, deadline=deadline, owner=owner,
                                         max_price=max_price)
        manifest, info = self.first_circuit(model_id)  # a sliced model's input is its first slice's
        salt = check_salt(manifest.salt_elements, salt, required=False)
        commitment = input_commitment(self.workspace.store, manifest, models.parse_inputs(inputs_doc, info), salt)
        try:  # the input is stored for the prover after the escrow transaction: make sure it can be
            json.dumps(inputs_doc, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the input must be a JSON document of numbers ({exc})") from exc
        key = self._checked_listing(model_id, owner, max_price)
        deadline = deadline if deadline is not None else self._deadline(ttl_s)
        submitted, approve_tx = self._escrow(key, bytes.fromhex(commitment.commitment[2:]), deadline, payment)
        receipt = RequestReceipt(submitted.request_id, model_id, commitment.commitment, salt, submitted.deadline,
                                 submitted.amount, self.accounts.consumer.address, payment, submitted.tx, approve_tx)
        self.home.save_request(RequestRecord(
            receipt.request_id, self.client.chain_id, self.market.address, model_id, inputs_doc, salt,
            receipt.commitment, receipt.deadline, receipt.amount, receipt.consumer, payment, submitted.tx.tx_hash,
            datetime.now(UTC).isoformat(timespec="seconds"),
        ))
        return receipt

    def request_attested(self, model_id: str, doc: Any, *, ttl_s: int | None = None, deadline: int | None = None,
                         owner: str | None = None, max_price: int | None = None,
                         node: str = "prover") -> RequestReceipt:
        """Escrow the price of an attested generation on the AttestationCourt: the consumer commits to its
        generate request ``{prompt, max_tokens, temperature, seed}``; the node commits its signed result and is
        paid when the challenge window closes (or slashed, and the consumer refunded, after a lost challenge).
        ``node``: the node that answers ("prover": this market's prover account; or its address). The court
        refuses a request naming no node: any staked node could copy a pending commitment and answer it."""
        court = self._court()
        doc = instances.escrow_request(doc)
        commitment = instances.input_commitment(doc)
        key = self._checked_listing(model_id, owner, max_price)
        consumer = self.accounts.consumer
        price = self._affordable(key)
        approve_tx = None
        if self.usdc.allowance(consumer.address, court.address) < price:
            approve_tx = self.usdc.approve(court.address, price, consumer)
        named = self.accounts.prover.address if node == "prover" else node
        if not named or int(named, 16) == 0:
            raise UsageError("a court request must name the node that answers it (its address)")
        deadline = deadline if deadline is not None else self._deadline(ttl_s)
        request_id, tx = court.request_tx(key, bytes.fromhex(commitment[2:]), deadline, consumer, node=named)
        return RequestReceipt(request_id, model_id, commitment, None, deadline, price, consumer.address, "approve",
                              tx, approve_tx, contract="AttestationCourt", node=named)

    def refund(self, request_id: int) -> RefundResult:
        """Take the escrowed amount back after the deadline (consumer only)."""
        tx = self.market.refund(request_id, self.accounts.consumer)
        events = self.market.decode_events(tx, "RequestRefunded")
        amount = int(events[0]["amount"]) if events else 0
        self._record_outcome(request_id, {"status": "REFUNDED", "tx_hash": tx.tx_hash, "refunded": amount})
        return RefundResult(request_id, amount, self.accounts.consumer.address, tx)

    def refund_court(self, request_id: int) -> RefundResult:
        """Take a court request's price back after its deadline when no node committed (consumer only)."""
        court = self._court()
        tx = court.refund(request_id, self.accounts.consumer)
        events = court.decode_events(tx, "Refunded")
        return RefundResult(request_id, int(events[0]["amount"]) if events else 0, self.accounts.consumer.address, tx)

    # --- internals ----------------------------------------------------------------------------
    def _checked_listing(self, model_id: str, owner: str | None, max_price: int | None) -> bytes:
        """``owner``'s listing of ``model_id``, checked against the local manifest (and the price cap)."""
        key = self._listing_key(model_id, owner)
        self.check_entry(model_id, key, max_price=max_price)
        return key

    def _affordable(self, key: bytes) -> int:
        """The listing's price, which the consumer must hold."""
        price = self.registry.get_model(key).spec.price
        self._require_funds(self.accounts.consumer.address, price, "the model costs {amount} USDC")
        return price

    def _escrow(self, key: bytes, commitment: bytes, deadline: int,
                payment: str) -> tuple[RequestSubmitted, TxResult | None]:
        consumer = self.accounts.consumer
        price = self._affordable(key)
        if payment == "eip3009":
            auth, salt = self.market.sign_request_authorization(consumer, key, commitment, deadline)
            return self.market.request_inference_with_authorization(key, commitment, deadline, auth, salt,
                                                                    consumer), None
        approve_tx = None
        if self.usdc.allowance(consumer.address, self.market.address) < price:
            approve_tx = self.usdc.approve(self.market.address, price, consumer)
        return self.market.request_inference(key, commitment, deadline, consumer), approve_tx

    def _deadline(self, ttl_s: int | None) -> int:
        ttl = ttl_s if ttl_s is not None else self.workspace.settings.chain.request_ttl_s
        if not MIN_TTL_S <= ttl <= MAX_TTL_S:
            raise UsageError(f"the request's time to live must be {MIN_TTL_S} s to 30 days, not {ttl} s")
        return self.client.timestamp() + ttl
