"""The x402 batch-settlement channel contracts at the SDK's fixed addresses.

On public chains the x402 project deploys them by CREATE2 at ``BATCH_SETTLEMENT_ADDRESS`` and the ERC-3009 deposit
collector's address, and Multicall3 is at its canonical address. On a chain whose profile allows test contracts (the
devnet) ``install_batch_settlement`` puts this project's builds there (``contracts/BatchSettlement.sol``,
``ERC3009DepositCollector.sol``, ``Multicall3.sol``): each is deployed normally, then its runtime code is copied to
the fixed address with ``anvil_setCode`` (none of them keeps constructor-set storage; the collector's one immutable,
the channel contract's address, is part of its code). ``channel_state`` reads one channel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address as ChecksumAddress  # noqa: N812
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
)
from x402.mechanisms.evm.constants import MULTICALL3_ADDRESS

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.devkeys import dev_account
from proofmarket.core.errors import ChainError, UsageError

INSTALLER_INDEX = 0  # the devnet's admin account deploys the templates whose code is copied


@dataclass(frozen=True)
class ChannelAddresses:
    settlement: str
    erc3009_collector: str
    multicall3: str


@dataclass(frozen=True)
class ChannelOnChain:
    balance: int
    total_claimed: int
    withdraw_amount: int
    withdraw_initiated_at: int
    refund_nonce: int

    @property
    def available(self) -> int:
        return self.balance - self.total_claimed


def install_batch_settlement(client: ChainClient, deployer: LocalAccount | None = None) -> ChannelAddresses:
    """Put the channel contract, its ERC-3009 collector and Multicall3 at the SDK's addresses (those already there
    are left as they are). Only where the chain's profile allows test contracts."""
    if not client.profile.test_usdc_allowed:
        raise UsageError(f"chain {client.profile.name} is not a devnet: the x402 batch-settlement contracts are "
                         "deployed there by the x402 project, not installed by proofmarket", chain=client.profile.name)
    deployer = deployer or dev_account(INSTALLER_INDEX, client.chain_id)
    for name, address, args in (("BatchSettlement", BATCH_SETTLEMENT_ADDRESS, ()),
                                ("ERC3009DepositCollector", ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
                                 (BATCH_SETTLEMENT_ADDRESS,)),
                                ("Multicall3", MULTICALL3_ADDRESS, ())):
        client.names[address.lower()] = name  # the gas report's name for it
        if client.code_at(address):
            continue
        template, _ = client.deploy(load_artifact(name), deployer, *args)
        client.rpc("anvil_setCode", [address, "0x" + client.code_at(template).hex()])
    return ChannelAddresses(BATCH_SETTLEMENT_ADDRESS, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, MULTICALL3_ADDRESS)


def channel_state(client: ChainClient, channel_id: str) -> ChannelOnChain:
    """One channel as the chain has it (balance, claimed total, pending withdrawal, refund nonce)."""
    contract = client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)
    key = bytes.fromhex(channel_id.removeprefix("0x"))
    balance, claimed = client.call(contract.functions.channels(key))
    amount, initiated = client.call(contract.functions.pendingWithdrawals(key))
    nonce = client.call(contract.functions.refundNonce(key))
    return ChannelOnChain(int(balance), int(claimed), int(amount), int(initiated), int(nonce))


def claims_revert(client: ChainClient, sender: str, claims: list[Any], gas: int | None = None) -> bool:
    """Whether ``claim(claims)`` sent by ``sender`` (the receiver) would revert: an ``eth_call`` of the contract's
    own rule (a voucher signature it refuses, a claim above a channel's balance after a withdrawal), nothing sent.
    ``claims``: the SDK's ``VoucherClaim``s; ``gas`` caps the call (a payer's ERC-1271 code runs inside it)."""
    contract = client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)
    encoded = [((_config(c.channel), int(c.max_claimable_amount)), bytes.fromhex(str(c.signature).removeprefix("0x")),
                int(c.total_claimed)) for c in claims]
    try:
        call = {"from": client.w3.to_checksum_address(sender), "to": contract.address,
                "data": contract.encode_abi("claim", args=[encoded])}
        if gas is not None:
            call["gas"] = gas
        client.w3.eth.call(call)  # type: ignore[arg-type]
    except Exception:  # a revert (or an RPC error: then the batch is tried again on the next pass)
        return True
    return False


def _config(config: Any) -> tuple[Any, ...]:
    to = ChecksumAddress
    return (to(config.payer), to(config.payer_authorizer), to(config.receiver), to(config.receiver_authorizer),
            to(config.token), int(config.withdraw_delay), bytes.fromhex(str(config.salt).removeprefix("0x")))


class ChannelReader:
    """What the ``batch-settlement`` rail reads of the channel contract itself: a channel's state with its armed
    withdrawal, whether a payer has code (its vouchers answer ERC-1271), whether a claim would revert, and the
    withdrawals payers armed since the last look (``WithdrawInitiated`` events)."""

    CODE_TTL_S = 60.0

    def __init__(self, client: ChainClient, receiver: str) -> None:
        self.client, self.receiver = client, receiver
        self._code: dict[str, tuple[float, bool]] = {}
        self._next_block: int | None = None
        self._events = client.w3.eth.contract(abi=load_artifact("BatchSettlement").abi).events.WithdrawInitiated()

    def state(self, channel_id: str) -> ChannelOnChain:
        return channel_state(self.client, channel_id)

    def withdrawal(self, channel_id: str) -> tuple[int, int]:
        """The payer's armed withdrawal: (amount, initiated at), (0, 0) when none (one ``eth_call``, read on every
        paid voucher)."""
        amount, initiated = self.client.read(BATCH_SETTLEMENT_ADDRESS, "pendingWithdrawals(bytes32)",
                                             [bytes.fromhex(channel_id.removeprefix("0x")).rjust(32, b"\0")],
                                             ["uint128", "uint40"], what="channel contract")
        return int(amount), int(initiated)

    def has_code(self, address: str) -> bool:
        key, now = address.lower(), time.monotonic()
        seen = self._code.get(key)
        if seen is None or now - seen[0] > self.CODE_TTL_S:
            seen = (now, bool(self.client.code_at(ChecksumAddress(address))))
            self._code[key] = seen
        return seen[1]

    def claim_reverts(self, claims: list[Any], *, bounded: bool = False) -> bool:
        """``bounded``: a voucher checked before serving, whose payer's code runs in the call (an anonymous caller
        chose it): capped at the wallet checks' gas and time (``chain.signatures``), a stall counted as a revert."""
        if not bounded:
            return claims_revert(self.client, self.receiver, claims)
        from proofmarket.chain.signatures import WALLET_CHECK_GAS
        from proofmarket.chain.signatures import bounded as within_limits

        try:
            return within_limits(lambda: claims_revert(self.client, self.receiver, claims, gas=WALLET_CHECK_GAS),
                                 str(claims[0].channel.payer) if claims else "")
        except ChainError:
            return True

    def exits_since_last(self, lookback_blocks: int = 10_000) -> list[tuple[str, int, int]]:
        """(channel id, amount, finalizable at) of each ``WithdrawInitiated`` since the last call (the first looks
        ``lookback_blocks`` back): the sweeper claims such a channel's charges at once."""
        head = self.client.block_number()
        start = self._next_block if self._next_block is not None else max(0, head - lookback_blocks)
        if start > head:
            return []
        logs = self.client.w3.eth.get_logs({"address": ChecksumAddress(BATCH_SETTLEMENT_ADDRESS),
                                            "fromBlock": start, "toBlock": head,
                                            "topics": [self._events.topic]})
        self._next_block = head + 1
        out = []
        for log in logs:
            event = self._events.process_log(log)
            out.append(("0x" + bytes(event["args"]["channelId"]).hex(), int(event["args"]["amount"]),
                        int(event["args"]["finalizableAt"])))
        return out
