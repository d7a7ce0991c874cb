"""Building the ``upto`` rail of a paid node (called by the composition root, ``node/compose.py``).

x402's upto scheme settles through Permit2 and x402's upto proxy at the SDK's fixed addresses: on a chain whose profile
allows dev contracts (the devnet) both are installed when missing (``chain/permit2.py``); elsewhere
``PROOFMARKET_UPTO=auto`` offers upto only when both are there, ``on`` refuses to start without them. The facilitator
must settle upto too (the in-process one does; a remote one that does not leaves upto out of the terms).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from proofmarket.chain.client import ChainClient
from proofmarket.chain.permit2 import (
    PERMIT2_ADDRESS,
    X402_UPTO_PERMIT2_PROXY_ADDRESS,
    install_upto,
    nonce_used,
)
from proofmarket.core.settings import X402Settings
from proofmarket.node.chain_setup import fixed_contracts_ready
from proofmarket.payments.exact.rail import X402Payments
from proofmarket.payments.onchain import NodeChain, usdc_domain
from proofmarket.payments.upto.rail import UptoRail, UptoTerms
from proofmarket.store import ArtifactStore

log = logging.getLogger(__name__)


class ChainReads:
    """The rail's chain reads (``payments.upto.rail.UptoChain``) on the node's client."""

    def __init__(self, client: ChainClient, balance: Callable[[str], int | None]) -> None:
        self.client, self._balance = client, balance

    def balance(self, account: str) -> int | None:
        return self._balance(account)

    def nonce_used(self, owner: str, nonce: int) -> bool:
        return nonce_used(self.client, owner, nonce)

    def succeeded(self, tx_hash: str) -> bool | None:
        receipt = self.client.receipt(tx_hash)
        return None if receipt is None else int(receipt["status"]) == 1

    def now(self) -> int:
        return self.client.timestamp()


def build_upto(chain: NodeChain, exact: X402Payments, store: ArtifactStore, extra: X402Settings) -> UptoRail | None:
    """The rail, registered first in ``exact``'s 402 terms of metered offers; None when off."""
    if extra.upto == "off" or not _contracts_ready(chain.client, extra):
        return None
    name, version = usdc_domain(chain.client, chain.usdc)
    terms = UptoTerms(network=exact.gate.network, asset=chain.usdc, token_name=name, token_version=version,
                      min_validity_s=extra.payment_min_validity_s, max_timeout_s=extra.payment_max_timeout_s)
    rail = UptoRail(terms, exact.gate.facilitator, ChainReads(chain.client, exact.gate.balance), chain.node, store,
                    exact.pay_to_of, exact.with_terms, resend_after_s=exact.resend_after_s)
    exact.also_accept(rail.requirements, first=True)
    return rail


def _contracts_ready(client: ChainClient, extra: X402Settings) -> bool:
    return fixed_contracts_ready(client, (PERMIT2_ADDRESS, X402_UPTO_PERMIT2_PROXY_ADDRESS), install_upto, extra.upto,
                                 "PROOFMARKET_UPTO", "Permit2 and the x402 upto proxy")
