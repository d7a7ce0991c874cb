"""The x402 ``proven`` rail's checks before anything is proven, with no chain (a stand-in for its reads and its
settlement): the payload each refusal names, the payer's own signature, the nonce's binding, the request's own
input commitment; the payer's x402 SDK client builds what the rail accepts. (On a devnet with real proofs:
tests/intake/test_x402_proven.py; the contract: tests/chain/test_chain_market_proven.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from x402 import x402ClientSync
from x402.http import encode_payment_signature_header

from proofmarket.core.errors import (
    PaymentAmountMismatch,
    PaymentError,
    PaymentExpired,
    PaymentMismatch,
    PaymentReplayed,
    PaymentSettlementFailed,
    PaymentSignatureInvalid,
)
from proofmarket.payments.port import Offer
from proofmarket.payments.proven.client import ProvenEvmScheme
from proofmarket.payments.proven.rail import ProvenRail, ProvenTerms
from proofmarket.payments.proven.scheme import ProvenPayment
from proofmarket.payments.tickets import ProofOutcome

CHAIN_ID = 31337
NETWORK = f"eip155:{CHAIN_ID}"
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
MARKET = "0x" + "4d" * 20
PROVER = Account.from_key(b"\x01" * 32).address
LISTING = "0x" + "ab" * 32
COMMITMENT = "0x" + "cd" * 32
PRICE = 10_000
PAYER = Account.from_key(b"\x02" * 32)


class StandIn:
    """The rail's chain: balances, used nonces, and what was sent to fulfil."""

    def __init__(self) -> None:
        self.used: dict[bytes, str] = {}  # nonce -> the transaction that used it
        self.canceled: set[bytes] = set()
        self.sent: list[tuple[Any, ...]] = []
        self.refuse: Exception | None = None

    def balance(self, account: str) -> int | None:
        return 10 * PRICE

    def authorization_used(self, payer: str, nonce: bytes) -> bool:
        return nonce in self.used or nonce in self.canceled

    def authorization_event(self, payer: str, nonce: bytes) -> tuple[str, str] | None:
        if nonce in self.canceled:
            return "canceled", "0xcancel"
        return ("used", self.used[nonce]) if nonce in self.used else None

    def fulfill(self, payment: ProvenPayment, model_id: bytes, model_cid: str, bundle: dict[str, Any]) -> str:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((payment.nonce, model_id, model_cid))
        return "0x" + "11" * 32

    def succeeded(self, tx_hash: str) -> bool | None:
        return True

    def now(self) -> int:
        import time

        return int(time.time())


def rail(chain: StandIn | None = None) -> ProvenRail:
    terms = ProvenTerms(NETWORK, USDC, "USD Coin", "2", CHAIN_ID, MARKET, PROVER, 60, 900)
    return ProvenRail(terms, chain or StandIn(), Account.from_key(b"\x03" * 32), None,  # type: ignore[arg-type]
                      with_terms=lambda err, offer, req: err)


def offer(commitment: str | None = COMMITMENT, split: str | None = LISTING) -> Offer:
    return Offer(model_id="bafkmodel", model_name="m", price_atomic=PRICE, resource="http://node/v1/models/m/infer",
                 split=split, input_commitment=(lambda: commitment) if commitment else None)


def header(the_rail: ProvenRail, the_offer: Offer, *, commitment: str = COMMITMENT, account: Any = PAYER,
           extra: dict[str, Any] | None = None, max_amount: int | None = None, timeout: int | None = None,
           amount: int | None = None) -> str:
    """What the payer's x402 SDK client sends for these terms (the project's scheme registered in it)."""
    requirements = the_rail.requirements(the_offer)
    assert requirements is not None
    requirements = requirements.model_copy(update={"extra": {**(requirements.extra or {}), **(extra or {})},
                                                   **({"max_timeout_seconds": timeout} if timeout else {}),
                                                   **({"amount": str(amount)} if amount else {})})
    client = x402ClientSync()
    scheme = ProvenEvmScheme(account, lambda _: commitment, market=MARKET, max_amount=max_amount)
    client.register(NETWORK, scheme)  # type: ignore[arg-type]
    client.set_spend_controls({"allowed_assets": [{"network": NETWORK, "asset": USDC}]})
    from x402.schemas import PaymentRequired

    payload = client.create_payment_payload(PaymentRequired(x402_version=2, accepts=[requirements]))
    return str(encode_payment_signature_header(payload))


def test_the_terms_are_offered_for_a_listed_model_with_an_input_commitment_only() -> None:
    r = rail()
    terms = r.requirements(offer())
    assert terms is not None and terms.scheme == "proven" and terms.pay_to.lower() == MARKET
    assert terms.extra == {"name": "USD Coin", "version": "2", "modelId": LISTING, "model": "bafkmodel",
                           "prover": PROVER}
    assert r.requirements(offer(split=None)) is None  # not sold on a registry listing
    assert r.requirements(offer(commitment=None)) is None  # a system without an input commitment


def test_a_well_made_payment_is_accepted_and_its_nonce_reserved_once() -> None:
    r = rail()
    signed = header(r, offer())
    assert r.accepts({"PAYMENT-SIGNATURE": signed}) and r.payer_of({"PAYMENT-SIGNATURE": signed}) == PAYER.address
    ticket = r.verify({"PAYMENT-SIGNATURE": signed}, offer())
    assert ticket is not None and ticket.payer == PAYER.address and ticket.amount_atomic == PRICE
    with pytest.raises(PaymentReplayed):
        r.verify({"PAYMENT-SIGNATURE": signed}, offer())


@pytest.mark.parametrize(("change", "error", "words"), [
    ({"commitment": "0x" + "ee" * 32}, PaymentMismatch, "another input"),  # signed for another input
    ({"extra": {"prover": Account.from_key(b"\x09" * 32).address}}, PaymentMismatch, "prover"),  # another prover
    ({"extra": {"modelId": "0x" + "01" * 32}}, PaymentMismatch, "modelId"),  # another listing
    ({"amount": PRICE - 1}, PaymentAmountMismatch, "at most"),  # less than the price
    ({"timeout": 5}, PaymentError, "expires"),  # a window too short for queue, proof and settlement
])
def test_each_bad_payment_is_refused_before_anything_is_proven(change: dict[str, Any], error: type[Exception],
                                                               words: str) -> None:
    r = rail()
    with pytest.raises(error, match=words):
        r.verify({"PAYMENT-SIGNATURE": header(r, offer(), **change)}, offer())


def test_a_signature_by_someone_else_than_the_payer_it_names_is_refused() -> None:
    r = rail()
    signed = header(r, offer())
    from x402.http import decode_payment_signature_header

    payload = decode_payment_signature_header(signed)
    other = header(r, offer(), account=Account.from_key(b"\x05" * 32))
    forged = dict(payload.payload, signature=decode_payment_signature_header(other).payload["signature"])
    tampered = encode_payment_signature_header(payload.model_copy(update={"payload": forged}))
    with pytest.raises(PaymentSignatureInvalid, match="not signed by its payer|nonce"):
        r.verify({"PAYMENT-SIGNATURE": str(tampered)}, offer())
    assert r.payer_of({"PAYMENT-SIGNATURE": str(tampered)}) is None


def test_an_authorization_already_used_on_chain_is_refused() -> None:
    chain = StandIn()
    r = rail(chain)
    signed = header(r, offer())
    from x402.http import decode_payment_signature_header

    nonce = decode_payment_signature_header(signed).payload["authorization"]["nonce"]
    chain.used[bytes.fromhex(nonce[2:])] = "0xearlier"
    with pytest.raises(PaymentReplayed, match="already used on chain"):
        r.verify({"PAYMENT-SIGNATURE": signed}, offer())


def test_a_refused_settlement_fails_the_call_and_charges_nothing() -> None:
    from proofmarket.core.errors import ContractReverted

    chain = StandIn()
    r = rail(chain)
    ticket = r.verify({"PAYMENT-SIGNATURE": header(r, offer())}, offer())
    assert ticket is not None
    chain.refuse = ContractReverted("the chain did not verify the proof")
    outcome = ProofOutcome("job", "bafkmodel", "bafkbundle", COMMITMENT, "0x" + "00" * 32,
                           {"proof": {"hex": "0x00", "instances": []}})
    with pytest.raises(PaymentSettlementFailed, match="nothing was charged"):
        r.settle(ticket, outcome)
    assert chain.sent == []


def test_the_expired_window_is_refused() -> None:
    r = rail()
    signed = header(r, offer(), timeout=1)
    import time

    time.sleep(1.1)
    with pytest.raises((PaymentExpired, PaymentError)):
        r.verify({"PAYMENT-SIGNATURE": signed}, offer())


def test_a_batched_call_settles_its_slot_with_the_batch_verifier() -> None:
    """MarketSettlement: a bundle proven with others goes to fulfillAuthorizedBatch with its slot and the model's
    batch verifier (a stand-in market records the call)."""
    from types import SimpleNamespace

    from proofmarket.node.proven_build import MarketSettlement

    seen: dict[str, Any] = {}

    def batch(calls: Any, size: int, proof: bytes, instances: list[int], sender: Any) -> list[Any]:
        seen.update(calls=calls, size=size, proof=proof, instances=instances)
        return [SimpleNamespace(tx=SimpleNamespace(tx_hash="0xbatch"))]

    market = SimpleNamespace(
        market=SimpleNamespace(fulfill_authorized_batch=batch),
        registry=SimpleNamespace(batch_verifier=lambda model, size: SimpleNamespace(address=f"0xverifier{size}")),
        accounts=SimpleNamespace(prover=PROVER), chain_proof=lambda model, verifier, proof: verifier.encode() + proof)
    r = rail()
    ticket = r.verify({"PAYMENT-SIGNATURE": header(r, offer())}, offer())
    assert ticket is not None
    payment = ProvenPayment.parse(ticket.doc["payload"]["payload"])
    bundle = {"proof": {"hex": "0xaabb", "instances": ["0x01", "0x02"]}, "batch": {"size": 4, "slot": 2}}
    tx = MarketSettlement(market, lambda a: 0).fulfill(payment, bytes.fromhex(LISTING[2:]), "bafkmodel", bundle)
    assert tx == "0xbatch" and seen["size"] == 4 and seen["instances"] == [1, 2]
    (call, slot), = seen["calls"]
    assert slot == 2 and call.input_commitment == bytes.fromhex(COMMITMENT[2:]) and call.max_amount == PRICE
    assert seen["proof"] == b"0xverifier4" + bytes.fromhex("aabb")


def test_a_payment_relabelled_with_the_requests_commitment_is_refused_by_its_nonce() -> None:
    """Signed for another input, then its inputCommitment field rewritten to this request's: the nonce the payer
    signed binds the other commitment, so it is refused (the market would refuse it too)."""
    r = rail()
    from x402.http import decode_payment_signature_header

    payload = decode_payment_signature_header(header(r, offer(), commitment="0x" + "ee" * 32))
    relabelled = dict(payload.payload, inputCommitment=COMMITMENT)
    forged = str(encode_payment_signature_header(payload.model_copy(update={"payload": relabelled})))
    with pytest.raises(PaymentSignatureInvalid, match="nonce does not bind"):
        r.verify({"PAYMENT-SIGNATURE": forged}, offer())


def outcome() -> ProofOutcome:
    return ProofOutcome("job", "bafkmodel", "bafkbundle", COMMITMENT, "0x" + "00" * 32,
                        {"proof": {"hex": "0x00", "instances": []}})


def test_a_send_refused_because_an_earlier_send_settled_it_is_followed_to_that_settlement() -> None:
    """A retry (or a run after a restart) whose send reverts because the authorization is already used is never
    failed as uncharged: follow finds the transaction that used it and the call is settled by that one."""
    from proofmarket.core.errors import ContractReverted, PaymentSettlementPending

    chain = StandIn()
    r = rail(chain)
    ticket = r.verify({"PAYMENT-SIGNATURE": header(r, offer())}, offer())
    assert ticket is not None
    nonce = ProvenPayment.parse(ticket.doc["payload"]["payload"]).nonce
    chain.used[nonce] = "0xfirst"
    chain.refuse = ContractReverted("the authorization is used or canceled")
    with pytest.raises(PaymentSettlementPending):
        r.settle(ticket, outcome())
    settled = r.follow(ticket, outcome(), None)
    assert settled is not None and settled.payment is not None and settled.payment["transaction"] == "0xfirst"


def test_an_authorization_the_payer_canceled_fails_the_call_uncharged() -> None:
    chain = StandIn()
    r = rail(chain)
    ticket = r.verify({"PAYMENT-SIGNATURE": header(r, offer())}, offer())
    assert ticket is not None
    chain.canceled.add(ProvenPayment.parse(ticket.doc["payload"]["payload"]).nonce)
    with pytest.raises(PaymentSettlementFailed, match="canceled"):
        r.follow(ticket, outcome(), None)


def test_the_payer_refuses_terms_that_pay_anything_but_the_market_it_trusts() -> None:
    """A node naming its own wallet as payTo could call receiveWithAuthorization itself and take the payment with
    no proof: the scheme signs for the market it was given only."""
    r = rail()
    terms = r.requirements(offer())
    assert terms is not None
    wallet = terms.model_copy(update={"pay_to": "0x" + "77" * 20})
    client = x402ClientSync()
    client.register(NETWORK, ProvenEvmScheme(PAYER, lambda _: COMMITMENT, market=MARKET))  # type: ignore[arg-type]
    client.set_spend_controls({"allowed_assets": [{"network": NETWORK, "asset": USDC}]})
    from x402.schemas import PaymentRequired

    with pytest.raises(PaymentMismatch, match="not the market this client trusts"):
        client.create_payment_payload(PaymentRequired(x402_version=2, accepts=[wallet]))
