"""A settlement still pending when the facilitator stops waiting is followed on chain, never dropped.

Real anvil with automine off keeps the facilitator's transferWithAuthorization in the mempool; the gate
reports it pending (``PaymentSettlementPending``), then ``follow`` reads the authorization's nonce state on
the token: unused -> still pending, used -> settled (the mined transaction found), expired unused -> failed
with nobody charged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from payments_helpers import PRICE, Market, anvil_or_skip, header, signed_payload

from proofmarket.chain import Devnet, UsdcToken, advance_time, deploy, dev_account
from proofmarket.chain.devnet import automine_off
from proofmarket.core.errors import PaymentError, PaymentSettlementPending
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.types import VerifiedPayment

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]
WAIT_S = 1.0  # the facilitator's wait for a receipt



def verified(gate: PaymentGate, payer: object, payee: str, **bend: int) -> VerifiedPayment:
    requirements = gate.requirements(PRICE, payee)
    return gate.verify(header(signed_payload(payer, requirements, **bend)), requirements)  # type: ignore[arg-type]


def test_a_pending_settlement_is_followed_until_mined(market: Market) -> None:
    gate = market.gate(confirmation_timeout_seconds=WAIT_S)
    payment = verified(gate, market.payer, market.payee.address)
    payer0, payee0 = market.usdc.balance_of(market.payer.address), market.usdc.balance_of(market.payee.address)

    with automine_off(market.client):
        with pytest.raises(PaymentSettlementPending) as pending:
            gate.settle(payment)
        tx = pending.value.details["tx"]
        assert isinstance(tx, str) and tx.startswith("0x")
        assert gate.follow(payment, tx) is None  # still in the mempool: keep the hold
        entry = gate.ledger.get(payment.key)
        assert entry is not None and entry.settlement is None
        market.client.rpc("evm_mine", [])

    settled = gate.follow(payment, tx)
    assert settled is not None and settled.tx_hash == tx and settled.amount == PRICE
    assert market.usdc.balance_of(market.payer.address) == payer0 - PRICE
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE
    assert gate.follow(payment, None) == settled  # answered from the ledger from now on
    assert gate.settle(payment) == settled  # and never sent again


def test_a_restarted_node_finds_the_settlement_without_the_tx_hash(market: Market) -> None:
    gate = market.gate(confirmation_timeout_seconds=WAIT_S)
    payment = verified(gate, market.payer, market.payee.address)
    with automine_off(market.client):
        with pytest.raises(PaymentSettlementPending) as pending:
            gate.settle(payment)
        market.client.rpc("evm_mine", [])

    restarted = market.gate()  # an empty ledger, no tx hash: the AuthorizationUsed event names it
    found = restarted.follow(payment, None)
    assert found is not None and found.tx_hash == pending.value.details["tx"]


def test_an_authorization_that_expires_unused_fails_and_charges_nobody(tmp_path: Path) -> None:
    # own anvil: chain time is moved forward here
    with Devnet(tmp_path, anvil=anvil_or_skip()) as devnet:
        client = devnet.client()
        usdc = UsdcToken(client, deploy(client, dev_account(0, client.chain_id), tmp_path / "d.json").usdc)
        payer, payee = dev_account(2, client.chain_id), dev_account(1, client.chain_id)
        gate = PaymentGate.local(rpc_url=devnet.rpc_url, signer=dev_account(9, client.chain_id), asset=usdc.address,
                                 chain=client, confirmation_timeout_seconds=WAIT_S, min_validity_seconds=5)
        payment = verified(gate, payer, payee.address, valid_before=int(time.time()) + 60)
        before = usdc.balance_of(payer.address), usdc.balance_of(payee.address)

        with automine_off(client):
            with pytest.raises(PaymentSettlementPending) as pending:
                gate.settle(payment)
            client.rpc("anvil_dropTransaction", [pending.value.details["tx"]])  # it never gets mined
            assert gate.follow(payment, pending.value.details["tx"]) is None
        advance_time(client, 120)

        with pytest.raises(PaymentError) as failed:
            gate.follow(payment, pending.value.details["tx"])
        assert failed.value.code == "payment_settlement_failed" and "nothing was charged" in failed.value.message
        assert (usdc.balance_of(payer.address), usdc.balance_of(payee.address)) == before


def test_a_used_authorization_whose_transfer_is_out_of_sight_is_never_called_uncharged(market: Market) -> None:
    gate = market.gate()
    payment = verified(gate, market.payer, market.payee.address)
    gate.settle(payment)  # the payer is charged ...
    market.client.rpc("evm_mine", [])

    restarted = market.gate()  # ... and a restarted node cannot see the transfer's event any more
    assert restarted._reader is not None
    restarted._reader.lookback_blocks = 0
    with pytest.raises(PaymentSettlementPending):  # settling (hold kept), not "nothing was charged"
        restarted.follow(payment, None)


def test_a_send_that_raised_after_broadcasting_is_followed_not_failed(market: Market,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the RPC accepted the transaction, then the connection dropped: the SDK reports "transaction_failed"
    # with no hash. The node must not call that "nothing was charged".
    from x402.mechanisms.evm import FacilitatorWeb3Signer

    real = FacilitatorWeb3Signer.write_contract

    def sent_then_lost(self: FacilitatorWeb3Signer, *args: object, **kwargs: object) -> str:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(FacilitatorWeb3Signer, "write_contract", sent_then_lost)
    gate = market.gate()
    payment = verified(gate, market.payer, market.payee.address)
    payee0 = market.usdc.balance_of(market.payee.address)

    with automine_off(market.client):
        with pytest.raises(PaymentSettlementPending):
            gate.settle(payment)
        assert gate.follow(payment, None) is None
        market.client.rpc("evm_mine", [])

    settled = gate.follow(payment, None)
    assert settled is not None and settled.amount == PRICE
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE
