"""Results delivered into consumer contracts after the court paid them (``contracts/CourtCallbacks.sol``).

A consumer contract requests an attested result through a CourtCallbacks contract, which is then the court request's
consumer of record. Once the court paid the request, the node calls ``deliver``: the consumer contract gets the result
in its callback and the node earns the request's tip (the first successful delivery's). Anyone may deliver; the node
does it so that a dApp needs no keeper of its own.

What the node delivers for: a consumer whose code is this repository's CourtCallbacks build (immutables masked)
over this node's court: any other contract answering ``entries`` could make the node pay gas for nothing. An entry
whose callback gas is above ``PROOFMARKET_CALLBACK_MAX_GAS``, or whose tip does not cover that gas at
``PROOFMARKET_CALLBACK_TIP_PER_MGAS`` (``callback_terms.py``), is left to others (the consumer chose it; anyone may
deliver it). A callback that reverts or runs out of gas is said by the contract (``CallbackDelivered(.., false)``)
and is not tried again by the node: the consumer (or anyone) may ``deliver`` again once it is fixed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.verify_code import MATCH, compare
from proofmarket.core.errors import ProofMarketError
from proofmarket.db.book import Accounts, Transfer
from proofmarket.intake.callback_terms import CallbackRule

log = logging.getLogger("proofmarket.court")
ZERO = "0x" + "00" * 20


@dataclass(frozen=True)
class Delivered:
    """What a delivery did: whether the consumer's callback succeeded, its transaction, the tip the node earned."""

    ok: bool
    tx_hash: str
    tip: int

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "tx": self.tx_hash, "tip": str(self.tip)}


class CourtDelivery:
    def __init__(self, client: ChainClient, court: str, node: LocalAccount, callbacks: CallbackRule) -> None:
        self.client, self.court, self.node, self.callbacks = client, court.lower(), node, callbacks
        self._artifact = load_artifact("CourtCallbacks")
        self._ours: dict[str, bool] = {}  # address -> a CourtCallbacks build over this court

    def is_callbacks(self, address: str) -> bool:
        key = address.lower()
        if key not in self._ours:
            self._ours[key] = self._check(address)
        return self._ours[key]

    def deliver(self, request_id: int, consumer: str) -> Delivered | None:
        """Deliver a paid request's result into its consumer contract when the node should (see the module); None
        when it should not or has nothing to deliver (already done, not a CourtCallbacks request)."""
        if not self.is_callbacks(consumer):
            return None
        contract = self.client.contract(consumer, self._artifact.abi)
        owner, gas, done, _, tip = self.client.call(contract.functions.entries(request_id))
        if done or str(owner).lower() == ZERO:
            return None
        refused = self.callbacks.refusal(int(gas), int(tip), f"court request {request_id}")
        if refused is not None:
            log.info("%s: left to others", refused.message)
            return None
        sent = self.client.transact(contract.functions.deliver(request_id), self.node)
        events = contract.events.CallbackDelivered().process_receipt(sent.receipt, errors=DISCARD)
        ok = bool(events[0]["args"]["ok"]) if events else False
        return Delivered(ok, sent.tx_hash, int(tip) if ok else 0)

    def tip_transfer(self, request_id: int, consumer: str, model_id: str, done: Delivered) -> Transfer | None:
        """The tip the delivery paid the node, as the book records it (none for a failed callback)."""
        if not done.tip:
            return None
        return Transfer.move(f"court-callback:{self.client.chain_id}:{consumer.lower()}:{request_id}", "capture",
                             "court", Accounts.wallet(consumer), Accounts.wallet(self.node.address), done.tip,
                             model_id=model_id, tx_hash=done.tx_hash, memo={"request_id": request_id, "tip": True})

    def _check(self, address: str) -> bool:
        try:
            code = self.client.code_at(address)
            if not code or compare("CourtCallbacks", address, code, self._artifact).status != MATCH:
                return False
            contract = self.client.contract(address, self._artifact.abi)
            return str(self.client.call(contract.functions.court())).lower() == self.court
        except ProofMarketError as exc:
            log.warning("could not read the contract at %s: %s", address, exc.message)
            return False
