"""A toy proof system and a toy payment rail, written against the ports only (nothing in src/ names them).

The toy system "proves" that its output is the sum of its input by restating both with their hashes: anyone can
recompute it (it stands in for a real system's verifier). The toy rail pays from prepaid credit balances named by
an ``X-Toy-Credit`` header, and brings its own routes (``/v1/toy``) and table (``toy_topups``) through the port.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Body
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from proofmarket.core.errors import (
    BundleError,
    InputError,
    PaymentInsufficientFunds,
    PaymentRequired,
    VerificationFailed,
)
from proofmarket.db.book import Accounts, Transfer
from proofmarket.db.engine import Database
from proofmarket.payments.port import Offer, RailExtras
from proofmarket.payments.routes import ADMIN_SECURITY, HostDep
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.store import ArtifactStore
from proofmarket.systems.port import Events, Execution, SystemContext, SystemSpec, VerifyReport

TOY = "toy-sum-v1"
BUNDLE_FORMAT = "proofmarket/proof-bundle"


def digest(value: Any) -> str:
    return "0x" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def parse_manifest(doc: dict[str, Any]) -> SimpleNamespace:
    if doc.get("system") != TOY or not isinstance(doc.get("name"), str):
        raise BundleError("not a toy manifest")
    return SimpleNamespace(system=TOY, mode="toy", name=doc["name"], public_cids=[])


def parse_bundle(doc: dict[str, Any]) -> dict[str, Any]:
    for key in ("model", "input", "output"):
        if not isinstance(doc.get(key), dict):
            raise BundleError(f"a toy bundle has a {key} section")
    return doc


def verify(bundle: dict[str, Any], store: ArtifactStore, **options: Any) -> VerifyReport:
    values, output = bundle["input"]["values"], bundle["output"]["values"]
    if output != [[float(sum(values))]]:
        raise VerificationFailed("the toy output is not the sum of its input")
    if bundle["input"]["commitment"] != digest(values) or bundle["output"]["hash"] != digest(output):
        raise VerificationFailed("the toy bundle's hashes do not match its input and output")
    if parse_manifest(store.get_json(bundle["model"]["id"])).system != TOY:
        raise VerificationFailed("the bundle's model is not a toy model")
    return VerifyReport(True, bundle["model"]["id"], output, "none", ["toy: the output is the input's sum"],
                        mode="toy")


class ToySystem:
    system = TOY
    mode = "toy"
    per_worker = False

    def __init__(self, context: SystemContext) -> None:
        self.store = context.store
        self.runs = 0

    def check(self, model_id: str, request: dict[str, Any]) -> None:
        values = (request.get("inputs") or {}).get("values")
        if not isinstance(values, list) or not values or not all(isinstance(v, int | float) for v in values):
            raise InputError("a toy model takes {\"values\": [numbers]}")

    def price(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int:
        return listed_atomic * len(request["inputs"]["values"])  # per value summed

    def metered(self, model_id: str, request: dict[str, Any], listed_atomic: int) -> int | None:
        return None

    def run(self, model_id: str, request: dict[str, Any], events: Events | None = None) -> Execution:
        self.runs += 1
        values = request["inputs"]["values"]
        output = [[float(sum(values))]]
        bundle = {"format": BUNDLE_FORMAT, "version": 1, "system": TOY, "mode": "toy", "model": {"id": model_id},
                  "input": {"values": values, "commitment": digest(values)},
                  "output": {"values": output, "hash": digest(output)}, "payment": None, "receipt": None}
        return Execution(self.store.put_json(bundle), bundle, {"output": output})

    def verify(self, bundle: Any, **options: Any) -> VerifyReport:
        return verify(bundle, self.store)

    def describe(self) -> dict[str, Any]:
        return {"system": TOY, "mode": "toy"}

    def warm(self) -> None:
        return None

    @property
    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None


TOY_SPEC = SystemSpec(system=TOY, mode="toy", guarantee="toy: the output is the sum of the input, recomputable",
                      parse_manifest=parse_manifest, parse_bundle=parse_bundle, verify=verify, build=ToySystem,
                      compile=lambda request: compile_toy(request.store, request.name or "toy"))


def compile_toy(store: ArtifactStore, name: str) -> str:
    return store.put_json({"format": "proofmarket/toy-manifest", "system": TOY, "mode": "toy", "name": name})


# the toy rail's own table, on a metadata of its own (no migration of the node holds it: the node creates it)
TOPUPS = Table("toy_topups", MetaData(), Column("id", Integer, primary_key=True, autoincrement=True),
               Column("account", String(64), nullable=False), Column("amount", Integer, nullable=False))
toy_router = APIRouter(prefix="/v1/toy", tags=["toy"])


@toy_router.post("/topups", operation_id="toy_topup", openapi_extra=ADMIN_SECURITY)
def topup(host: HostDep, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
    """The operator (admin token) tops an account up: one row in the rail's own table."""
    host.require_admin()
    rail = host.rail(ToyRail)
    assert rail is not None
    return {"account": body["account"], "balance": rail.top_up(str(body["account"]), int(body["amount"]))}


@toy_router.get("/accounts/{account}", operation_id="toy_account")
def account(account: str, host: HostDep) -> dict[str, Any]:
    rail = host.rail(ToyRail)
    assert rail is not None
    return {"account": account, "balance": rail.balances.get(account, 0), "topups": rail.topups(account)}


class ToyRail(RailExtras):
    """Prepaid credits: ``X-Toy-Credit: <account>`` pays from that account's balance."""

    name = "toy-credits"
    HEADER = "X-Toy-Credit"
    tables = (TOPUPS,)

    @staticmethod
    def routers() -> list[APIRouter]:
        return [toy_router]

    def __init__(self, balances: dict[str, int], payee: str = "0x" + "00" * 20, db_url: str | None = None) -> None:
        self.db = Database(db_url) if db_url else None
        self.balances, self.payee = dict(balances), payee
        self.settled: list[str] = []
        self.settled_on: list[str] = []  # the threads that settled (the node's call settler's)
        self.released: list[str] = []
        self._lock = threading.Lock()

    def accepts(self, headers: Mapping[str, str]) -> bool:
        return bool(headers.get(self.HEADER))

    def describe(self) -> dict[str, Any]:
        return {"toy": True}

    def payer_of(self, headers: Mapping[str, str]) -> str | None:
        return headers.get(self.HEADER)

    def verify(self, headers: Mapping[str, str], offer: Offer) -> Ticket | None:
        account = headers.get(self.HEADER)
        if not account or account not in self.balances:
            raise PaymentRequired(f"this call costs {offer.price_atomic} toy credits: name a funded account")
        return Ticket(nonce=f"toy:{uuid.uuid4().hex}", amount_atomic=offer.price_atomic, payer=account,
                      doc={"account": account})

    def cover(self, ticket: Ticket, held_atomic: int) -> None:
        if self.balances[str(ticket.payer)] - held_atomic < ticket.amount_atomic:
            raise PaymentInsufficientFunds("the toy account cannot cover this call")

    def settle(self, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        with self._lock:
            if ticket.nonce not in self.settled:  # capture once per ticket
                self.balances[str(ticket.payer)] -= ticket.amount_atomic
                self.settled.append(ticket.nonce)
                self.settled_on.append(threading.current_thread().name)  # which of the node's threads settled it
        # what the capture moved, for the node's book: the payer's credit to what the node owes the model's payee
        # (paid out by the node's one payout path, like every rail's)
        owed = Transfer.move(f"toy:{ticket.nonce}", "capture", self.name, Accounts.wallet(str(ticket.payer)),
                             Accounts.payee(self.payee), ticket.amount_atomic, model_id=proof.model_id,
                             payer=str(ticket.payer))
        return Settlement(payment={"rail": self.name, "payer": ticket.payer, "amount": str(ticket.amount_atomic),
                                   "bundle_cid": proof.bundle_cid}, receipt=None, transfers=(owed,))

    def follow(self, ticket: Ticket, proof: ProofOutcome, tx_hash: str | None) -> Settlement | None:
        return None

    def release(self, ticket: Ticket) -> None:
        self.released.append(ticket.nonce)

    def answer_headers(self, settlement: Settlement) -> dict[str, str]:
        return {"X-Toy-Charged": str((settlement.payment or {}).get("amount", 0))}

    def top_up(self, account: str, amount: int) -> int:
        assert self.db is not None
        with self.db.session() as s:
            s.execute(insert(TOPUPS).values(account=account, amount=amount))
        with self._lock:
            self.balances[account] = self.balances.get(account, 0) + amount
            return self.balances[account]

    def topups(self, account: str) -> list[int]:
        if self.db is None:
            return []
        with self.db.session() as s:
            return [int(a) for a in s.scalars(select(TOPUPS.c.amount).where(TOPUPS.c.account == account))]
