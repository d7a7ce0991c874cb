"""Building the ``batch-settlement`` rail of a paid node (called by the composition root, ``node/compose.py``).

The channel contract lives at the SDK's fixed address (``BATCH_SETTLEMENT_ADDRESS``) and the SDK reads channels
through Multicall3: on a chain whose profile allows dev contracts (the devnet) both are installed when missing;
elsewhere ``PROOFMARKET_BATCH_SETTLEMENT=auto`` offers channels only when the contract is there, ``on`` refuses to
start without it.
"""

from __future__ import annotations

import logging

from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import ChannelManagerConfigSync
from x402.mechanisms.evm.batch_settlement.server.channel_manager_sync import BatchSettlementChannelManagerSync
from x402.mechanisms.evm.batch_settlement.server.scheme import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeServerConfig,
)
from x402.mechanisms.evm.constants import MULTICALL3_ADDRESS

from proofmarket.chain.channels import ChannelReader, install_batch_settlement
from proofmarket.core.errors import UsageError
from proofmarket.core.settings import X402Settings
from proofmarket.db import Database, LeaseRepo
from proofmarket.node.chain_setup import fixed_contracts_ready
from proofmarket.payments.batch.rail import BatchSettlementRail, ChannelTerms
from proofmarket.payments.batch.repo import ChannelRepo
from proofmarket.payments.batch.store import DbChannelStorage
from proofmarket.payments.batch.sweeps import Sweeper, SweepPolicy
from proofmarket.payments.exact.rail import X402Payments
from proofmarket.payments.onchain import NodeChain, usdc_domain
from proofmarket.store import ArtifactStore

log = logging.getLogger(__name__)


def check_sweep_before_withdrawal(extra: X402Settings) -> None:
    """A payer's timed withdrawal must not end before the node claims what the payer's vouchers owe it: the sweep
    interval (the longest a charge waits for its claim) stays under half the withdrawal delay."""
    if extra.channel_sweep_interval_s * 2 > extra.channel_withdraw_delay_s:
        raise UsageError(f"PROOFMARKET_CHANNEL_SWEEP_INTERVAL_S ({extra.channel_sweep_interval_s:g} s) must be at "
                         f"most half of PROOFMARKET_CHANNEL_WITHDRAW_DELAY_S ({extra.channel_withdraw_delay_s} s): a "
                         "payer could withdraw what its vouchers owe before the node claims it")


def build_batch(chain: NodeChain, exact: X402Payments, db: Database, store: ArtifactStore, extra: X402Settings,
                *, sweep: bool = True) -> BatchSettlementRail | None:
    """The rail (with its sweeper when ``sweep``: a background service the node starts), registered in ``exact``'s
    402 terms; None when off."""
    if extra.batch_settlement == "off":
        return None
    check_sweep_before_withdrawal(extra)
    if not _contracts_ready(chain, extra):
        return None
    name, version = usdc_domain(chain.client, chain.usdc)
    terms = ChannelTerms(network=exact.gate.network, asset=chain.usdc, token_name=name, token_version=version,
                         receiver=chain.node.address, withdraw_delay_s=extra.channel_withdraw_delay_s,
                         max_timeout_s=extra.payment_max_timeout_s,
                         min_deposit_calls=extra.channel_min_deposit_calls)
    storage = DbChannelStorage(ChannelRepo(db))
    rail = BatchSettlementRail(terms, storage, exact.gate.facilitator, chain.node, store, exact.pay_to_of,
                               exact.with_terms)
    reader = ChannelReader(chain.client, terms.receiver)
    rail.chain = reader  # the contract's rule for vouchers and the payer's armed withdrawal, read from the chain
    exact.also_accept(rail.requirements)
    if sweep:
        rail.sweeper = sweeper_for(rail, chain, db, extra)
    return rail


def sweeper_for(rail: BatchSettlementRail, chain: NodeChain, db: Database, extra: X402Settings) -> Sweeper:
    """The rail's claims and sweeps: the SDK's channel manager over the node's channel storage, then payouts."""
    terms = rail.terms
    scheme = BatchSettlementEvmScheme(terms.receiver, BatchSettlementEvmSchemeServerConfig(
        storage=rail.storage, receiver_authorizer_signer=rail.authorizer, withdraw_delay=terms.withdraw_delay_s))
    manager = BatchSettlementChannelManagerSync(ChannelManagerConfigSync(
        scheme=scheme, facilitator=rail.facilitator, receiver=terms.receiver, token=terms.asset,
        network=terms.network))
    policy = SweepPolicy(interval_s=extra.channel_sweep_interval_s,
                         threshold_atomic=extra.channel_sweep_threshold_atomic)
    sweeper = Sweeper(rail.storage.repo, manager, terms.receiver, policy, LeaseRepo(db))
    reader = rail.chain if isinstance(rail.chain, ChannelReader) else ChannelReader(chain.client, terms.receiver)
    sweeper.simulate = reader.claim_reverts
    sweeper.exits = reader.exits_since_last  # a withdrawal armed: that channel's charges are claimed at once
    return sweeper


def _contracts_ready(chain: NodeChain, extra: X402Settings) -> bool:
    return fixed_contracts_ready(chain.client, (BATCH_SETTLEMENT_ADDRESS, MULTICALL3_ADDRESS), install_batch_settlement,
                                 extra.batch_settlement, "PROOFMARKET_BATCH_SETTLEMENT",
                                 "the x402 batch-settlement contract and Multicall3")
