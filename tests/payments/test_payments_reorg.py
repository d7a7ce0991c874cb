"""An x402 settlement on a chain that reorgs: it counts only once the profile's confirmations are on top of it, a
settlement whose block is orphaned is sent again, and the payer is charged once (anvil's ``anvil_reorg``)."""

from __future__ import annotations

import pytest
from payments_helpers import PRICE, Market, header, signed_payload

from proofmarket.core.errors import PaymentSettlementPending
from proofmarket.payments.exact.gate import PaymentGate
from proofmarket.payments.facilitators import ReorgSafeSigner
from proofmarket.payments.types import VerifiedPayment

pytestmark = [pytest.mark.chain, pytest.mark.timeout(120)]


def verified(gate: PaymentGate, market: Market) -> VerifiedPayment:
    requirements = gate.requirements(PRICE, market.payee.address)
    return gate.verify(header(signed_payload(market.payer, requirements)), requirements)  # type: ignore[arg-type]


def test_a_settlement_counts_only_with_its_confirmations(market: Market) -> None:
    gate = market.gate(confirmations=2)
    payment = verified(gate, market)
    with pytest.raises(PaymentSettlementPending, match="0 of 2 confirmations") as pending:
        gate.settle(payment)
    tx = pending.value.details["tx"]
    with pytest.raises(PaymentSettlementPending, match="of 2 confirmations"):
        gate.follow(payment, tx)
    market.client.rpc("anvil_mine", ["0x2"])
    settled = gate.follow(payment, tx)
    assert settled is not None and settled.tx_hash == tx


def test_a_settlement_orphaned_by_a_reorg_is_sent_again_and_charged_once(
        market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ReorgSafeSigner, "QUIET_S", 0.0)  # the node re-sends seconds later; the test at once
    gate = market.gate(confirmations=2)
    payment = verified(gate, market)
    payer0 = market.usdc.balance_of(market.payer.address)
    payee0 = market.usdc.balance_of(market.payee.address)
    with pytest.raises(PaymentSettlementPending) as pending:
        gate.settle(payment)
    orphaned = pending.value.details["tx"]
    assert market.usdc.balance_of(market.payer.address) == payer0 - PRICE  # mined, not yet confirmed

    market.client.rpc("anvil_reorg", [1, []])  # the block with the settlement is replaced by an empty one
    assert market.usdc.balance_of(market.payer.address) == payer0
    assert gate.vanished(orphaned)
    assert gate.follow(payment, orphaned) is None  # unused and still valid: nothing counted, nothing failed

    with pytest.raises(PaymentSettlementPending) as again:  # what the rail's follower does when it is gone
        gate.settle(payment)
    resent = again.value.details["tx"]
    assert resent != orphaned and not gate.vanished(resent)
    market.client.rpc("anvil_mine", ["0x2"])
    settled = gate.follow(payment, orphaned)  # the job still names the orphaned hash: the token's event finds it
    assert settled is not None and settled.tx_hash == resent
    assert gate.settle(payment) == settled  # never sent a third time
    assert market.usdc.balance_of(market.payer.address) == payer0 - PRICE  # charged once
    assert market.usdc.balance_of(market.payee.address) == payee0 + PRICE
