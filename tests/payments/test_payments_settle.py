"""Settling: at most once per payment, whatever the callers do; recovery after a crash; receipts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from eth_account import Account
from payments_helpers import PRICE, Market, anvil_or_skip, header, signed_payload
from x402.http import decode_payment_response_header

from proofmarket.chain import Devnet, advance_time, deploy, dev_account, sign_cancel_authorization
from proofmarket.core.errors import FacilitatorUnavailable, PaymentError, PaymentRejected
from proofmarket.payments.exact.accepted import InMemoryNonceLedger
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.facilitators import local_facilitator
from proofmarket.payments.types import PaidOnChain, VerifiedPayment
from proofmarket.systems.receipts import sign_receipt, verify_receipt

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]


def verified(market: Market, gate: PaymentGate) -> tuple[VerifiedPayment, str]:
    requirements = gate.requirements(PRICE, market.payee.address)
    payment = header(signed_payload(market.payer, requirements))
    return gate.verify(payment, requirements), payment


def test_settle_called_twice_settles_once(market: Market, gate: PaymentGate) -> None:
    payment, _ = verified(market, gate)
    payee0 = market.usdc.balance_of(market.payee.address)

    first = gate.settle(payment)
    second = gate.settle(payment)

    assert first == second
    assert first == PaidOnChain(first.tx_hash, market.payer.address, PRICE, market.network)
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE


def test_concurrent_settles_move_the_money_once(market: Market, gate: PaymentGate) -> None:
    payment, _ = verified(market, gate)
    payee0 = market.usdc.balance_of(market.payee.address)
    results: list[PaidOnChain] = []

    threads = [threading.Thread(target=lambda: results.append(gate.settle(payment))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 4 and len(set(results)) == 1
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE


def test_a_settled_payment_stays_in_the_ledger(market: Market, gate: PaymentGate) -> None:
    payment, _ = verified(market, gate)
    settlement = gate.settle(payment)

    gate.release(payment)  # too late: a settled payment is never forgotten

    entry = gate.ledger.get(payment.key)
    assert entry is not None and entry.settlement == settlement
    assert gate.ledger.pending() == []


def test_a_released_payment_is_not_charged_and_can_be_presented_again(market: Market, gate: PaymentGate) -> None:
    payment, raw = verified(market, gate)
    payer0 = market.usdc.balance_of(market.payer.address)

    gate.release(payment)  # proving failed
    with pytest.raises(PaymentRejected, match="not reserved"):
        gate.settle(payment)
    assert market.usdc.balance_of(market.payer.address) == payer0

    retried = gate.verify(raw, payment.requirements)  # the consumer retries with the same authorization
    gate.settle(retried)
    assert market.usdc.balance_of(market.payer.address) == payer0 - PRICE


def test_a_payment_survives_a_restart_as_json_and_settles_later(market: Market) -> None:
    before = market.gate()
    payment, _ = verified(market, before)
    stored = json.dumps(payment.to_json())  # the job row
    payee0 = market.usdc.balance_of(market.payee.address)

    after = market.gate()  # the node restarted; its ledger is the database
    restored = VerifiedPayment.from_json(json.loads(stored))
    assert restored == payment
    assert after.ledger.reserve(restored)
    settlement = after.settle(restored)

    assert settlement.payer == market.payer.address and settlement.amount == PRICE
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE


def test_a_settlement_lost_in_a_crash_is_recovered_from_the_chain(market: Market) -> None:
    node = market.gate()
    payment, _ = verified(market, node)
    done = node.settle(payment)  # the transfer happened ...
    payee0 = market.usdc.balance_of(market.payee.address)

    ledger = InMemoryNonceLedger()  # ... but the node crashed before recording it
    ledger.reserve(payment)
    restarted = market.gate(ledger=ledger)
    recovered = restarted.settle(payment)

    assert recovered == done
    assert market.usdc.balance_of(market.payee.address) == payee0  # no second transfer
    entry = ledger.get(payment.key)
    assert entry is not None and entry.settlement == done


def test_an_unreachable_facilitator_is_an_outage_not_a_refusal(market: Market) -> None:
    live = market.gate()
    requirements = live.requirements(PRICE, market.payee.address)
    payment = header(signed_payload(market.payer, requirements))
    dead_rpc = "http://127.0.0.1:9"  # nothing listens there
    down = PaymentGate(
        local_facilitator(market.facilitator, dead_rpc, market.network),
        network=market.network,
        asset=market.usdc.address,
    )

    with pytest.raises(FacilitatorUnavailable) as outage:
        down.verify(payment, requirements)

    assert outage.value.http_status == 503
    assert down.ledger.pending() == []  # the reservation was rolled back


def test_the_payment_response_carries_a_verifiable_receipt(market: Market, gate: PaymentGate) -> None:
    payment, _ = verified(market, gate)
    settlement = gate.settle(payment)
    node = Account.create()
    receipt = sign_receipt(
        node,
        model_id="m1",
        input_commitment=b"\x01" * 32,
        output_hash=b"\x02" * 32,
        bundle_cid="bafkreiexample",
        network=settlement.network,
        transaction=settlement.tx_hash,
        payer=settlement.payer,
        amount=settlement.amount,
        resource_url="http://node/v1/models/m1/infer",
    )

    response = decode_payment_response_header(gate.payment_response_header(settlement, receipt))

    assert response.success and response.transaction == settlement.tx_hash
    extensions = response.extensions or {}
    assert extensions["offer-receipt"]["info"]["receipt"] == receipt["x402"]
    carried = extensions["proofmarket-receipt"]["info"]
    assert verify_receipt(carried, expected_signer=node.address) == node.address
    assert carried["typedData"]["message"]["transaction"] == settlement.tx_hash


def test_a_canceled_authorization_fails_the_settlement_and_charges_nobody(market: Market, gate: PaymentGate) -> None:
    payment, _ = verified(market, gate)
    # the payer cancels the authorization on chain while the node proves
    domain = market.usdc.domain()
    cancel = sign_cancel_authorization(market.payer, domain, bytes.fromhex(payment.nonce[2:]))
    fn = market.usdc.contract.functions.cancelAuthorization(
        market.payer.address, bytes.fromhex(payment.nonce[2:]), cancel.v, cancel.r, cancel.s
    )
    market.client.transact(fn, market.other)
    before = market.usdc.balance_of(market.payer.address), market.usdc.balance_of(market.payee.address)

    with pytest.raises(PaymentError) as failure:
        gate.settle(payment)

    assert failure.value.code == "payment_settlement_failed"
    assert "canceled" in failure.value.message and "nothing was charged" in failure.value.message
    after = market.usdc.balance_of(market.payer.address), market.usdc.balance_of(market.payee.address)
    assert after == before


def test_a_chain_clock_ahead_of_the_wall_clock_is_named(tmp_path: Path) -> None:
    # A devnet whose time was advanced (escrow tests do) judges validBefore by block time, the SDK by
    # wall-clock time: the gate must say "expired", not "rejected for no reason". Own anvil: time only
    # moves forward.
    with Devnet(tmp_path, anvil=anvil_or_skip()) as devnet:
        client = devnet.client()
        deployment = deploy(client, dev_account(0, client.chain_id), tmp_path / "deployment.json")
        gate = PaymentGate.local(rpc_url=devnet.rpc_url, signer=dev_account(9, client.chain_id), asset=deployment.usdc)
        requirements = gate.requirements(PRICE, dev_account(1, client.chain_id).address)
        payment = header(signed_payload(dev_account(2, client.chain_id), requirements))
        advance_time(client, 3600)

        with pytest.raises(PaymentError) as refusal:
            gate.verify(payment, requirements)

    assert refusal.value.code == "payment_expired"
    assert "chain time" in refusal.value.message


def test_the_chain_is_read_before_every_settlement(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    # a payment verified by this process may have been canceled (or spent) while it was proved: look first
    node = market.gate()
    reads: list[str] = []
    real = node._settled_on_chain

    def spy(payment: VerifiedPayment) -> PaidOnChain | None:
        reads.append(payment.key)
        return real(payment)

    monkeypatch.setattr(node, "_settled_on_chain", spy)
    payment, _ = verified(market, node)
    node.settle(payment)
    assert reads == [payment.key]
