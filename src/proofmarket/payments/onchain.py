"""What the token contract itself says about an authorization: used or not, and by which transaction; the
node's chain (``NodeChain``) and the EIP-712 domain its USDC signs in (``usdc_domain``).

The SDK's facilitator can name a replayed nonce only through Multicall3, which a bare anvil lacks,
and it cannot find the transaction of a settlement whose receipt it never saw (a crash between
broadcast and bookkeeping). Both questions are plain reads of the EIP-3009 token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3.logs import DISCARD

from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import UsdcToken
from proofmarket.core.errors import ChainError
from proofmarket.core.profiles import profile_for
from proofmarket.payments.types import PaidOnChain, VerifiedPayment

log = logging.getLogger(__name__)
LOOKBACK_BLOCKS = 50_000  # how far back to look for the AuthorizationUsed event of a settled payment


class TokenReader:
    """Reads of one EIP-3009 token through the project's ``ChainClient`` (errors translated there)."""

    def __init__(self, client: ChainClient, asset: str, *, lookback_blocks: int = LOOKBACK_BLOCKS,
                 log_range: int | None = None, confirmations: int | None = None) -> None:
        """``log_range``: blocks per eth_getLogs (public RPCs cap it); ``confirmations``: blocks on top of a
        settlement's block before it counts; unset = the chain profile's."""
        self.client = client
        self.token = UsdcToken(client, asset)
        self.lookback_blocks = lookback_blocks
        self._log_range = log_range
        self._confirmations = confirmations

    @property
    def confirmations(self) -> int:
        if self._confirmations is None:
            self._confirmations = profile_for(self.client.chain_id).confirmations
        return self._confirmations

    def unconfirmed(self, tx_hash: str) -> tuple[int, int, int] | None:
        """(block, confirmations so far, confirmations needed) of a mined settlement not yet deep enough; None once
        it is (or when no confirmations are asked: the devnet)."""
        if self.confirmations <= 0:
            return None
        with self.client.translate("read a settlement receipt"):
            receipt = self.client.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            head = int(self.client.w3.eth.block_number)
        block = int(receipt["blockNumber"])
        return None if head - block >= self.confirmations else (block, head - block, self.confirmations)

    def vanished(self, tx_hash: str) -> bool:
        """Whether the chain no longer knows a transaction at all (``ChainClient.vanished``): its authorization can
        be sent again."""
        return self.client.vanished(tx_hash)

    def nonce_used(self, payment: VerifiedPayment) -> bool:
        return self.token.authorization_state(to_checksum_address(payment.payer), bytes.fromhex(payment.nonce[2:]))

    def balance(self, account: str) -> int:
        return self.token.balance_of(to_checksum_address(account))

    def chain_time(self) -> int:
        """The latest block's timestamp: what EIP-3009's validAfter/validBefore are checked against."""
        return self.client.timestamp()

    def find_settlement(self, payment: VerifiedPayment, hint: str | None = None) -> PaidOnChain | None:
        """The transaction that consumed this authorization, if it paid exactly these terms (``hint``: the
        transaction the facilitator reported, looked at first)."""
        for tx_hash in ([hint] if hint else []) + self._authorization_txs(payment):
            receipt = self.client.receipt(tx_hash)
            if receipt is not None and self._pays(receipt, payment):  # mined, and it paid these terms
                return PaidOnChain(tx_hash, to_checksum_address(payment.payer), payment.amount, payment.network)
        return None

    def canceled(self, payment: VerifiedPayment) -> bool:
        """Whether the payer canceled this authorization (``cancelAuthorization``): nothing moved then."""
        return bool(self._authorization_txs(payment, "AuthorizationCanceled"))

    def _authorization_txs(self, payment: VerifiedPayment, name: str = "AuthorizationUsed") -> list[str]:
        """The transactions that emitted ``name`` for this authorization, newest range first: an authorization
        is used or canceled at most once, so the first range that has it ends the search."""
        event = getattr(self.token.contract.events, name)()
        step = self._log_range or profile_for(self.client.chain_id).log_range
        filters = {"authorizer": to_checksum_address(payment.payer), "nonce": bytes.fromhex(payment.nonce[2:])}
        with self.client.translate(f"read {name} events"):
            latest = int(self.client.w3.eth.block_number)
            oldest = max(0, latest - self.lookback_blocks)
            to_block = latest
            while to_block >= oldest:
                from_block = max(oldest, to_block - step + 1)
                logs = event.get_logs(from_block=from_block, to_block=to_block, argument_filters=filters)
                if logs:
                    return ["0x" + bytes(log["transactionHash"]).hex() for log in logs]
                to_block = from_block - 1
        return []

    def _pays(self, receipt: Any, payment: VerifiedPayment) -> bool:
        if receipt["status"] != 1:
            return False
        transfers = self.token.contract.events.Transfer().process_receipt(receipt, errors=DISCARD)
        return any(
            t["address"] == self.token.address
            and t["args"]["from"].lower() == payment.payer.lower()
            and t["args"]["to"].lower() == payment.pay_to.lower()
            and int(t["args"]["value"]) == payment.amount
            for t in transfers
        )


@dataclass(frozen=True)
class NodeChain:
    """What the gate needs from the chain: the client, the USDC token and the node's accounts."""

    client: ChainClient
    rpc_url: str
    usdc: str
    node: LocalAccount  # signs receipts
    facilitator: LocalAccount  # pays the gas of in-process settlements
    payee: str  # payTo when the model row names no owner


def usdc_domain(client: ChainClient, asset: str) -> tuple[str, str]:
    """The EIP-712 domain (name, version) the token ``asset`` checks EIP-3009 signatures in, which the 402 terms
    tell clients to sign in: the chain profile's for its canonical USDC (Base Sepolia's is "USDC", Base's "USD
    Coin"), else the token's own ``name()`` and ``version()`` (the devnet's TestUSDC, a token set by
    PROOFMARKET_USDC_ADDRESS)."""
    profile = client.profile
    if profile.usdc is not None and profile.usdc.lower() == asset.lower():
        return profile.usdc_name, profile.usdc_version
    token = UsdcToken(client, asset)
    try:
        return token.name(), token.version()
    except ChainError:  # a token without version(): FiatToken's domain version is "2"
        log.warning("token %s has no version(): signing in its name with version 2", asset)
        return token.name(), "2"
