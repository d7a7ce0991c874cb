"""Log reads sized by the chain profile: public RPCs cap eth_getLogs ranges, the devnet does not."""

from __future__ import annotations

import pytest
from chain_helpers import USDC, Chain
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.chain import sign_transfer_authorization
from proofmarket.chain.watcher import EventWatcher
from proofmarket.core.profiles import DEVNET
from proofmarket.payments.onchain import TokenReader
from proofmarket.payments.types import VerifiedPayment

pytestmark = pytest.mark.chain


def test_the_watcher_reads_the_profile_log_range_unless_given(chain: Chain) -> None:
    assert EventWatcher(chain.client, {"market": chain.market}).batch_size == DEVNET.log_range
    assert EventWatcher(chain.client, {"market": chain.market}, batch_size=3).batch_size == 3
    with pytest.raises(ValueError):
        EventWatcher(chain.client, {"market": chain.market}, batch_size=0)


def test_a_settlement_is_found_across_log_ranges_within_the_lookback(chain: Chain) -> None:
    a, usdc = chain.accounts, chain.usdc
    auth = sign_transfer_authorization(a.consumer, usdc.domain(), to=a.owner.address, value=2 * USDC, valid_after=0,
                                       valid_before=chain.client.timestamp() + 600)
    tx = usdc.transfer_with_authorization(auth, a.relayer).tx_hash
    chain.client.rpc("anvil_mine", [hex(40)])  # the settlement is now 40 blocks deep
    network = f"eip155:{chain.client.chain_id}"
    requirements = PaymentRequirements(scheme="exact", network=network, asset=usdc.address, amount=str(2 * USDC),
                                       pay_to=a.owner.address, max_timeout_seconds=600)
    payment = VerifiedPayment(PaymentPayload(payload={}, accepted=requirements), requirements, a.consumer.address,
                              "0x" + auth.nonce.hex(), auth.valid_after, auth.valid_before)
    found = TokenReader(chain.client, usdc.address, log_range=7).find_settlement(payment)  # 6 ranges back
    assert found is not None and found.tx_hash == tx and found.amount == 2 * USDC
    assert TokenReader(chain.client, usdc.address, log_range=7, lookback_blocks=30).find_settlement(payment) is None
    assert not TokenReader(chain.client, usdc.address, log_range=5).canceled(payment)
