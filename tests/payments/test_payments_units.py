"""Gate parts that need no chain: requirements, header parsing and term checks, the ledger, the paying
client's spend controls, the error tree, the public surface."""

from __future__ import annotations

import base64
import json
import time

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from payments_helpers import PRICE, edit_header, header, signed_payload
from x402.http import decode_payment_required_header, decode_payment_signature_header
from x402.schemas import PaymentPayload, PaymentRequirements
from x402.schemas import PaymentRequired as X402PaymentRequired

import proofmarket.payments as payments
from proofmarket.core import errors
from proofmarket.core.errors import PaymentError, PaymentRejected, UsageError
from proofmarket.payments.exact.accepted import InMemoryNonceLedger
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.facilitators import local_facilitator
from proofmarket.payments.parse import eoa_signature_valid, verified_payment
from proofmarket.payments.types import PaidOnChain
from proofmarket.sdk.pay import payment_signature_header, spend_controls

NETWORK = "eip155:31337"
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYEE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NOWHERE = "http://127.0.0.1:9"  # no RPC is reached by anything tested here


@pytest.fixture(scope="module")
def payer() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


@pytest.fixture
def gate() -> PaymentGate:
    facilitator = local_facilitator(Account.create(), NOWHERE, NETWORK)
    return PaymentGate(facilitator, network=NETWORK, asset=USDC.lower())


@pytest.fixture
def requirements(gate: PaymentGate) -> PaymentRequirements:
    return gate.requirements(PRICE, PAYEE.lower())


def refusal(gate: PaymentGate, payment: str, requirements: PaymentRequirements) -> PaymentError:
    with pytest.raises(PaymentError) as caught:
        gate.verify(payment, requirements)
    assert gate.ledger.pending() == []  # refused before anything was reserved
    return caught.value


# --- requirements and 402 ---------------------------------------------------------------------------
def test_requirements_are_exact_usdc_terms(gate: PaymentGate, requirements: PaymentRequirements) -> None:
    assert requirements.model_dump(by_alias=True) == {
        "scheme": "exact",
        "network": NETWORK,
        "asset": USDC,
        "amount": str(PRICE),
        "payTo": PAYEE,
        "maxTimeoutSeconds": 900,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    with pytest.raises(UsageError):
        gate.requirements(0, PAYEE)


def test_payment_required_header_without_discovery(gate: PaymentGate, requirements: PaymentRequirements) -> None:
    value = gate.payment_required_header(requirements, "http://node/x", description="sums", error="payment_expired")

    decoded = decode_payment_required_header(value)
    assert isinstance(decoded, X402PaymentRequired)
    assert json.loads(base64.b64decode(value))["x402Version"] == 2
    assert decoded.error == "payment_expired" and decoded.extensions is None
    assert decoded.resource is not None and decoded.resource.description == "sums"


# --- parsing and terms (all refused before any RPC) ---------------------------------------------------
def test_a_missing_header_asks_for_payment(gate: PaymentGate, requirements: PaymentRequirements) -> None:
    assert refusal(gate, "", requirements).code == "payment_required"


def test_a_v1_payment_is_refused(gate: PaymentGate, requirements: PaymentRequirements) -> None:
    v1 = base64.b64encode(json.dumps({"x402Version": 1, "scheme": "exact", "network": "base", "payload": {}}).encode())
    assert refusal(gate, v1.decode(), requirements).code == "payment_malformed"


def test_a_permit2_or_garbled_authorization_is_refused(
    gate: PaymentGate, requirements: PaymentRequirements, payer: LocalAccount
) -> None:
    honest = header(signed_payload(payer, requirements))
    no_auth = edit_header(honest, lambda d: d["payload"].pop("authorization"))
    short_nonce = edit_header(honest, lambda d: d["payload"]["authorization"].update(nonce="0x1234"))
    bad_value = edit_header(honest, lambda d: d["payload"]["authorization"].update(value="-5"))

    for payment in (no_auth, short_nonce, bad_value):
        assert refusal(gate, payment, requirements).code == "payment_malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [("network", "eip155:8453"), ("asset", "0x" + "12" * 20), ("payTo", "0x" + "34" * 20), ("scheme", "upto")],
)
def test_other_terms_are_refused_by_name(
    gate: PaymentGate, requirements: PaymentRequirements, payer: LocalAccount, field: str, value: str
) -> None:
    payment = edit_header(header(signed_payload(payer, requirements)), lambda d: d["accepted"].update({field: value}))

    error = refusal(gate, payment, requirements)

    assert error.code == "payment_mismatch" and error.details["fields"] == [field]


def test_other_timeout_or_token_domain_is_refused(
    gate: PaymentGate, requirements: PaymentRequirements, payer: LocalAccount
) -> None:
    honest = header(signed_payload(payer, requirements))
    payment = edit_header(honest, lambda d: d["accepted"]["extra"].update(name="X"))

    assert refusal(gate, payment, requirements).code == "payment_mismatch"


def test_the_window_is_checked_with_wall_clock_time(
    gate: PaymentGate, requirements: PaymentRequirements, payer: LocalAccount
) -> None:
    now = int(time.time())
    expired = header(signed_payload(payer, requirements, valid_before=now - 1))
    early = header(signed_payload(payer, requirements, valid_after=now + 60))

    assert refusal(gate, expired, requirements).code == "payment_expired"
    assert refusal(gate, early, requirements).code == "payment_not_yet_valid"


def test_a_local_signature_check_tells_forgeries_from_outages(
    requirements: PaymentRequirements, payer: LocalAccount
) -> None:
    honest = signed_payload(payer, requirements)
    forged = signed_payload(payer, requirements, signer=Account.create())

    assert eoa_signature_valid(verified_payment(honest, requirements))
    assert not eoa_signature_valid(verified_payment(forged, requirements))


# --- values and the ledger ----------------------------------------------------------------------------
def test_a_verified_payment_round_trips_through_json(requirements: PaymentRequirements, payer: LocalAccount) -> None:
    payload = decode_payment_signature_header(header(signed_payload(payer, requirements)))
    assert isinstance(payload, PaymentPayload)
    payment = verified_payment(payload, requirements)

    again = type(payment).from_json(json.loads(json.dumps(payment.to_json())))

    assert again == payment and again.key == payment.key
    assert payment.payer == payer.address and payment.amount == PRICE and 590 < payment.seconds_left() <= 600
    settlement = PaidOnChain("0x" + "aa" * 32, payer.address, PRICE, NETWORK)
    assert PaidOnChain.from_json(json.loads(json.dumps(settlement.to_json()))) == settlement


def test_the_ledger_reserves_once_and_never_forgets_a_settlement(
    requirements: PaymentRequirements, payer: LocalAccount
) -> None:
    ledger = InMemoryNonceLedger()
    payment = verified_payment(signed_payload(payer, requirements), requirements)
    settlement = PaidOnChain("0x" + "aa" * 32, payer.address, PRICE, NETWORK)

    assert ledger.reserve(payment) and not ledger.reserve(payment)
    assert ledger.pending() == [payment]
    ledger.release(payment.key)
    assert ledger.get(payment.key) is None and ledger.reserve(payment)
    ledger.mark_settled(payment.key, settlement)
    ledger.mark_settled(payment.key, settlement)  # idempotent
    with pytest.raises(ValueError, match="already settled"):
        ledger.mark_settled(payment.key, PaidOnChain("0x" + "bb" * 32, payer.address, PRICE, NETWORK))
    ledger.release(payment.key)
    entry = ledger.get(payment.key)
    assert entry is not None and entry.settled and ledger.pending() == [] and not ledger.reserve(payment)


# --- the paying client ---------------------------------------------------------------------------------
def test_the_client_pays_an_allowed_asset_within_its_cap(gate: PaymentGate, requirements: PaymentRequirements) -> None:
    payer: LocalAccount = Account.create()
    required = gate.payment_required_header(requirements, "http://node/x")

    value = payment_signature_header(payer, required, PRICE, assets=[(NETWORK, USDC)])

    payload = decode_payment_signature_header(value)
    assert isinstance(payload, PaymentPayload) and payload.accepted == requirements
    payment = verified_payment(payload, requirements)
    assert payment.payer == payer.address and eoa_signature_valid(payment)
    assert payment.valid_before - int(time.time()) in range(890, 901)


def test_the_client_refuses_unknown_assets_and_prices_above_its_cap(
    gate: PaymentGate, requirements: PaymentRequirements, payer: LocalAccount
) -> None:
    required = gate.payment_required_header(requirements, "http://node/x")

    with pytest.raises(PaymentRejected, match="spend"):
        payment_signature_header(payer, required, PRICE)  # TestUSDC is not a default asset
    with pytest.raises(PaymentRejected, match="spend|filtered"):
        payment_signature_header(payer, required, PRICE - 1, assets=[(NETWORK, USDC)])


def test_spend_controls_cap_every_asset() -> None:
    assert spend_controls(250_000, [(NETWORK, USDC)]) == {
        "max_amount_per_payment": "$0.250000",
        "allowed_assets": [{"network": NETWORK, "asset": USDC, "max_amount_per_payment": "250000"}],
    }


# --- errors and surface -----------------------------------------------------------------------------
def test_payment_errors_have_stable_codes_and_statuses() -> None:
    assert errors.PaymentReplayed.http_status == 409 and issubclass(errors.PaymentReplayed, PaymentRejected)
    assert errors.FacilitatorUnavailable.http_status == 503
    for cls in (errors.PaymentMalformed, errors.PaymentAmountMismatch, errors.PaymentExpired, errors.PaymentMismatch):
        assert cls.http_status == 402 and cls.exit_code == 5 and issubclass(cls, PaymentRejected)


def test_the_package_root_reexports_nothing() -> None:
    """Each name is imported from its module: the package's root loads no rail (its port stays light)."""
    assert not hasattr(payments, "__all__") and not hasattr(payments, "PaymentGate")
