"""The ``credits`` rail: API keys drawing on prepaid credits, for callers who do not sign per call.

    a key       made by its wallet's signature (``POST /v1/keys``), shown once, stored as a sha256; scoped to model ids
                (none: any), with a spend cap and an expiry; revoked by the same wallet. ``Authorization: Bearer
                pmk_...`` (or ``X-API-Key``) selects this rail
    credits     a wallet's balance is the sum of its ledger (``credit_ledger``: purchases with one x402 payment,
                deposits of USDC on chain, draws, refunds; each entry once per reference)
    verify      the key is known, live and in scope, and its cap covers the call's ceiling -> a ticket (401
                ``api_key_invalid``, 403 ``api_key_out_of_scope``, 402 ``api_key_cap_reached``)
    cover       the wallet's balance, minus what its other unsettled calls hold, covers the ceiling (402
                ``payment_insufficient_funds``)
    settle      draws ``ticket.used(outcome)`` once per call (a generation: the tokens produced) with a node receipt
    release     nothing was drawn
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from sqlalchemy import ColumnElement, select
from web3.logs import DISCARD

from proofmarket.chain.contracts import UsdcToken
from proofmarket.core.errors import (
    ApiKeyCapReached,
    ApiKeyInvalid,
    ApiKeyOutOfScope,
    ContractReverted,
    FeeTooHigh,
    PaymentInsufficientFunds,
    PaymentPayerBusy,
    PaymentSettlementFailed,
    TransactionNotMined,
    UsageError,
)
from proofmarket.db import CallRow, CallStatus
from proofmarket.db.leases import LeaseRepo
from proofmarket.db.repo import payer_key
from proofmarket.payments import collectable
from proofmarket.payments.credits.repo import CreditsRepo
from proofmarket.payments.credits.tables import TABLES, ApiKeyRow
from proofmarket.payments.onchain import NodeChain
from proofmarket.payments.port import Offer, RailExtras
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.systems.receipts import sign_receipt

NAME = "credits"
PREFIX = "pmk_"
TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")  # ERC-20 transfer(address,uint256)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_of(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries (``Authorization: Bearer pmk_...`` or ``X-API-Key: pmk_...``)."""
    direct = headers.get("X-API-Key") or headers.get("x-api-key")
    if direct and direct.strip().startswith(PREFIX):
        return direct.strip()
    scheme, _, token = (headers.get("Authorization") or headers.get("authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token.startswith(PREFIX) else None


class CreditsRail(RailExtras):
    name = NAME
    tables = TABLES

    @staticmethod
    def routers() -> list[Any]:
        """Its routes: keys, credits, passes, purchases and free quotas (``routes.py``)."""
        from proofmarket.payments.credits.routes import router

        return [router]

    def __init__(self, repo: CreditsRepo, node: LocalAccount, network: str, chain: NodeChain | None = None,
                 pay_to: Callable[[Offer], str] | None = None, free_min_balance: int = 0) -> None:
        self.repo, self.node, self.network, self.chain = repo, node, network, chain
        self.free_min_balance = free_min_balance  # credits a wallet holds to take free calls (held a day after one)
        self._pay_to = pay_to  # a model's payee (its listing's splitter, or its owner): what a call draws pays it
        self.leases = LeaseRepo(repo.db)  # the wallet's funds lock (LeaseRepo.funds), CallService's too
        self.gate: Callable[[], None] | None = None  # the book's chain tail: no refund while it is behind the chain

    # --- buying and refunding (on chain) ---------------------------------------------------------
    def deposit(self, tx_hash: str) -> list[tuple[str, int, bool]]:
        """Credit the USDC transfers to the node's account in ``tx_hash`` (each once, once deep enough):
        [(wallet, amount, new)]."""
        chain = self._chain()
        client = chain.client
        try:
            receipt = client.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except Exception as exc:
            raise UsageError(f"no mined transaction {tx_hash} on this node's chain", tx_hash=tx_hash) from exc
        depth = client.block_number() - int(receipt["blockNumber"])
        if depth < client.profile.confirmations:
            raise UsageError(f"the transaction is {depth} blocks deep; credits count after "
                             f"{client.profile.confirmations}: try again shortly", tx_hash=tx_hash)
        token = UsdcToken(client, chain.usdc).contract
        sent = client.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        sender, called = str(sent["from"]).lower(), str(sent.get("to") or "").lower()
        if called != chain.usdc.lower() or bytes(sent["input"])[:4] != TRANSFER_SELECTOR:
            # an x402 payment (a credits or pass purchase, a call), a channel's claim or anything a contract or a
            # facilitator sent is paid for already: only a plain transfer its sender sent is a deposit
            raise UsageError("a deposit is a USDC transfer(to, amount) sent by the depositing wallet itself to this "
                             f"node's account {self.node.address}: this transaction is not one (an x402 payment is "
                             "credited when it is made, at POST /v1/credits/buy)", tx_hash=tx_hash)
        credited = []
        for event in token.events.Transfer().process_receipt(receipt, errors=DISCARD):
            if str(event["address"]).lower() != chain.usdc.lower():
                continue
            if str(event["args"]["to"]).lower() != self.node.address.lower():
                continue
            if str(event["args"]["from"]).lower() != sender:
                continue
            wallet, amount = str(event["args"]["from"]).lower(), int(event["args"]["value"])
            _, new = self.repo.add(wallet, "deposit", amount, f"deposit:{tx_hash.lower()}:{event['logIndex']}",
                                   tx_hash=tx_hash.lower())
            credited.append((wallet, amount, new))
        if not credited:
            raise UsageError(f"the transaction sends no USDC to this node's account {self.node.address}",
                             tx_hash=tx_hash)
        return credited

    def refund(self, wallet: str) -> tuple[int, str]:
        """Send the wallet's unspent credits back on chain, less what its calls not settled yet will draw:
        (amount, transaction)."""
        chain = self._chain()
        if self.gate is not None:
            self.gate()  # BookBehindChain: a restored book may not hold a refund already sent
        with self.leases.funds(wallet):  # no call takes the balance meanwhile, and no second refund
            amount = self.spendable(wallet) - self.free_held(wallet)
            if amount <= 0:
                raise UsageError("there are no credits to refund (what remains is held by calls not settled yet, "
                                 "or as the funded minimum for a day after a free call)", wallet=wallet)
            ref = f"refund:{wallet.lower()}:{secrets.token_hex(8)}"
            self.repo.hold_refund(wallet, amount, ref)  # held first: a transfer never sent gives it back below
        try:
            tx = UsdcToken(chain.client, chain.usdc).transfer(to_checksum_address(wallet), amount, self.node).tx_hash
        except TransactionNotMined as exc:
            # sent: it may still be mined; the credits stay held and the settler confirms it (or voids it if the
            # chain never took it), as it does a payout
            self.repo.refund_sent(ref, *[str(h) for h in exc.details.get("hashes") or []])  # type: ignore[attr-defined]
            raise
        except (FeeTooHigh, ContractReverted) as exc:
            self.repo.refund_failed(ref, f"the refund transfer was not sent: {exc}")  # nothing moved: credits back
            raise
        except Exception:
            # the transfer may have left (the RPC failed while waiting for its receipt): the credits stay held,
            # never given back by a machine (that could refund twice); the ledger check names it
            self.repo.refund_unknown(ref)
            raise
        self.repo.refund_sent(ref, tx, mined=True)
        return amount, tx

    def _chain(self) -> NodeChain:
        if self.chain is None:
            raise UsageError("this node takes no payments on chain")
        return self.chain

    # --- keys ------------------------------------------------------------------------------------
    def new_key(self, wallet: str, *, models: list[str] | None = None, cap_atomic: int | None = None,
                expires_at: datetime | None = None, max_keys: int | None = None) -> tuple[str, ApiKeyRow]:
        """A new key for ``wallet``: (the secret, shown once; its row, which keeps only a hash). With ``max_keys``:
        refused when the wallet holds that many live keys or made that many in 24 hours (a key's free calls are its
        own, so revoking and making keys must not mint free calls), counted under the wallet's funds lock."""
        with self.leases.funds(wallet):
            if max_keys is not None:
                keys = self.repo.keys_of(wallet)
                live = sum(1 for k in keys if k.revoked_at is None)
                recent = sum(1 for k in keys if k.created_at > datetime.now(UTC) - timedelta(days=1))
                if live >= max_keys or recent >= max_keys:
                    raise UsageError(f"this wallet holds {live} live API keys and made {recent} in 24 hours; the "
                                     f"most is {max_keys} of each: revoke one, or wait", wallet=wallet)
            secret = PREFIX + secrets.token_urlsafe(32)
            row = self.repo.add_key("k_" + secrets.token_hex(8), wallet, key_hash(secret), models, cap_atomic,
                                    expires_at)
        return secret, row

    def key(self, headers: Mapping[str, str]) -> ApiKeyRow:
        secret = api_key_of(headers)
        row = self.repo.key_by_hash(key_hash(secret)) if secret else None
        if row is None:
            raise ApiKeyInvalid("this API key is not known to this node")
        if row.revoked_at is not None:
            raise ApiKeyInvalid("this API key was revoked by its wallet", key_id=row.id)
        if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
            raise ApiKeyInvalid("this API key has expired", key_id=row.id)
        return row

    # --- the port --------------------------------------------------------------------------------
    def accepts(self, headers: Mapping[str, str]) -> bool:
        return api_key_of(headers) is not None

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        secret = api_key_of(headers)
        row = self.repo.key_by_hash(key_hash(secret)) if secret else None
        return row.wallet if row is not None else None

    def describe(self) -> dict[str, Any]:
        return {"x402": False, "scheme": NAME, "header": "Authorization: Bearer pmk_...", "keys": "/v1/keys",
                "credits": "/v1/credits"}

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        """The key's ticket, with what pays it taken now under the wallet's funds lock, so that concurrent calls
        (on any node of this database) never share one free call, one pass call or one unit of the cap: a free call
        of the key today, else a call of a live pass, else credits (the ceiling reserved in the key's cap; the
        balance is checked by ``cover``). ``release`` gives back what a call that did not run took."""
        row = self.key(headers)
        if row.models and offer.model_id not in row.models:
            raise ApiKeyOutOfScope(f"this API key may call {', '.join(row.models)}, not {offer.model_id}",
                                   key_id=row.id, model_id=offer.model_id)
        call = secrets.token_hex(12)
        doc: dict[str, Any] = {"key_id": row.id, "model_id": offer.model_id, "resource": offer.resource,
                               "source": "credits"}
        if self._pay_to is not None:
            doc["pay_to"] = self._pay_to(offer).lower()
        nonce = f"credits:{row.id}:{call}"
        per_payer, total = self.repo.free_quota(offer.model_id)
        free_lock = self.leases.hold(f"free:{offer.model_id}", PaymentPayerBusy(
            "other callers held this model's free calls for over 10 s: try again"), wait_s=10.0) if per_payer \
            else nullcontext()
        with self.leases.funds(row.wallet), free_lock:
            if per_payer and self._free_call(row.wallet, offer.model_id, per_payer, total):
                doc["source"], nonce = "free", f"free:{row.id}:{call}"  # one of the owner's free calls today
            else:
                for held in self.repo.passes(row.wallet, offer.model_id):
                    if self.repo.used_today("pass", ref_prefix=f"pass:{held.id}:") < held.calls_per_day:
                        doc["source"], doc["pass_id"], nonce = "pass", held.id, f"pass:{held.id}:{call}"
                        doc["pass_ref"] = held.ref
                        break
            if doc["source"] == "credits":
                spent = self.repo.reserve_cap(row.id, offer.price_atomic)
                if spent is not None:
                    raise ApiKeyCapReached(f"this API key has spent or holds {spent} of its cap {row.cap_atomic}: "
                                           f"this call may cost {offer.price_atomic}", key_id=row.id)
            else:  # the free or pass call is counted from now on (a reservation: release deletes it)
                self.repo.add(row.wallet, str(doc["source"]), 0, nonce, key_id=row.id, model_id=offer.model_id)
        return Ticket(nonce=nonce, amount_atomic=offer.price_atomic, payer=row.wallet,
                      per_1k_tokens=offer.per_1k_tokens, doc=doc)

    def _free_call(self, wallet: str, model_id: str, per_payer: int, total: int) -> bool:
        """A free call for this wallet now: it holds the funded minimum in credits (a fresh wallet costs a sybil
        nothing, a funded one costs its balance, held for a day after a free call), it took fewer than
        ``per_payer`` free calls on the model today (over all its keys), and every payer together fewer than
        ``total`` (what the owner pays for)."""
        # net of what its calls not settled yet will draw (under the same funds lock as ``cover``)
        if self.spendable(wallet) < self.free_min_balance:
            return False
        if self.repo.used_today("free", wallet=wallet, model_id=model_id) >= per_payer:
            return False
        return self.repo.used_today("free", model_id=model_id) < total

    def spendable(self, wallet: str) -> int:
        """The wallet's balance less what its credit calls not settled yet will still draw."""
        balance, held = self._balance_and_held(wallet)
        return balance - held

    def _balance_and_held(self, wallet: str, besides: str | None = None) -> tuple[int, int]:
        """(the wallet's balance, what its credit calls not settled yet (``besides``: one left out) will still
        draw). A call draws (the balance falls) before it is marked settled, on another thread or node: the balance
        and the draws are read between two reads of which calls drew, again if a draw came meanwhile, so that no call
        is counted twice (drawn and held) or not at all (the funds lock keeps new calls out meanwhile)."""
        for _ in range(20):
            pending = self._credit_calls(wallet, besides)
            drawn = self.repo.drawn(list(pending))
            balance = self.repo.balance(wallet)
            if self.repo.drawn(list(pending)) == drawn:
                return balance, sum(amount for nonce, amount in pending.items() if nonce not in drawn)
        raise PaymentPayerBusy("this wallet's calls kept settling while its balance was read: try again",
                               wallet=wallet)

    def _credit_calls(self, wallet: str, besides: str | None, final_within_s: float = 0.0) -> dict[str, int]:
        """{payment nonce: ceiling} of the wallet's credit calls not final yet (and, with ``final_within_s``, those
        that became final that recently)."""
        unsettled = [s.value for s in (CallStatus.QUEUED, CallStatus.RUNNING, CallStatus.PROVED, CallStatus.SETTLING)]
        which: ColumnElement[bool] = CallRow.status.in_(unsettled)
        if final_within_s:
            which = which | (CallRow.finished_at >= datetime.now(UTC) - timedelta(seconds=final_within_s))
        with self.repo.db.session() as s:
            rows = s.execute(select(CallRow.payment_nonce, CallRow.payment).where(
                which, CallRow.payer == payer_key(wallet), CallRow.payment.is_not(None), CallRow.rail == NAME)).all()
        return {str(nonce): int(doc.get("amount_atomic") or 0) for nonce, doc in rows
                if str(doc.get("payer") or "").lower() == wallet.lower()
                and (doc.get("doc") or {}).get("source", "credits") == "credits" and nonce != besides}

    def free_held(self, wallet: str) -> int:
        """Credits a refund leaves: the funded minimum, for a day after the wallet's last free call."""
        if not self.free_min_balance or not self.repo.free_since(wallet, datetime.now(UTC) - timedelta(days=1)):
            return 0
        return self.free_min_balance

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        assert ticket.payer is not None
        if ticket.doc.get("source", "credits") != "credits":
            return  # a free call or a pass's: nothing is drawn
        # ``held_atomic`` (the engine's count of the payer's other unsettled calls, read just before) may still count
        # a credit call that has since drawn and been marked settled: its draw is in the balance now. The credit
        # calls are counted from the same reading as the balance instead; what else it holds is kept.
        balance, pending = self._balance_and_held(ticket.payer, besides=ticket.nonce)
        others = held_atomic - sum(self._credit_calls(ticket.payer, ticket.nonce, final_within_s=60.0).values())
        held_atomic = pending + max(0, others)
        minimum = self.free_held(ticket.payer)  # the free tier's funded minimum is not spendable for its hold period
        funds = collectable.spendable(balance, held_atomic + minimum,
                                      "its other calls" + (" and the free tier's funded minimum (held a day after "
                                                           "a free call)" if minimum else ""))
        if ticket.amount_atomic > funds.collectable:
            raise PaymentInsufficientFunds(
                f"the wallet's credits do not cover this call ({ticket.amount_atomic}): {funds.source} leave "
                f"{funds.collectable}; buy credits at POST /v1/credits/buy", balance=str(balance),
                held=str(held_atomic), free_minimum_held=str(minimum), price=str(ticket.amount_atomic))

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        assert ticket.payer is not None
        source = str(ticket.doc.get("source", "credits"))
        kind, used = ("draw", ticket.used(proof)) if source == "credits" else (source, 0)
        pay_to = ticket.doc.get("pay_to")
        # a draw turns the cap's reservation (the ceiling) into what the call used, with the entry and its transfer
        # to the model's payee in the book, once
        entry, _ = self.repo.add(ticket.payer, kind, used, ticket.nonce, key_id=str(ticket.doc.get("key_id")),
                                 model_id=proof.model_id, job_id=proof.job_id, pay_to=pay_to,
                                 spent_delta=used - ticket.amount_atomic if kind == "draw" else 0)
        if source == "pass" and ticket.doc.get("pass_ref"):  # the pass's price per call goes to the model's payee
            self.repo.pay_pass_call(ticket.nonce, str(ticket.doc["pass_ref"]), ticket.payer, proof.model_id,
                                    str(pay_to) if pay_to else None)
        return self._settlement(ticket, proof, entry.id, entry.amount)

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        entry = self.repo.entry(ticket.nonce)
        if entry is None:
            raise PaymentSettlementFailed("this call never drew its credits: nothing was charged")
        return self._settlement(ticket, proof, entry.id, entry.amount)

    def release(self, ticket: Ticket) -> None:
        """The call did not run: nothing is drawn; its free or pass call, or its cap's reservation, is given back."""
        source = str(ticket.doc.get("source", "credits"))
        key_id = ticket.doc.get("key_id")
        if source in ("free", "pass"):
            self.repo.drop_reservation(ticket.nonce)
        elif key_id:
            self.repo.release_cap(str(key_id), ticket.amount_atomic, ticket.nonce)  # not if it was drawn

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        payment = settlement.payment or {}
        return {"X-Credits-Balance": str(payment["balance"])} if payment.get("scheme") == NAME else {}

    def _settlement(self, ticket: Ticket, proof: ProofOutcome, entry_id: int, amount: int) -> Settlement:
        assert ticket.payer is not None
        receipt = sign_receipt(self.node, model_id=proof.model_id, input_commitment=proof.input_commitment,
                               output_hash=proof.output_hash, bundle_cid=proof.bundle_cid, network=self.network,
                               transaction=f"credits:{entry_id}", payer=ticket.payer, amount=amount,
                               resource_url=str(ticket.doc.get("resource", "")))
        payment = {"scheme": NAME, "network": self.network, "amount": str(amount),
                   "ceiling": str(ticket.amount_atomic), "payer": ticket.payer, "key_id": ticket.doc.get("key_id"),
                   "ledger_entry": entry_id, "balance": str(self.repo.balance(ticket.payer)),
                   "source": ticket.doc.get("source", "credits")}
        return Settlement(payment=payment, receipt=receipt)
