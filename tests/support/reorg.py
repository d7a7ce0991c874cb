"""anvil_reorg for tests: replace the newest blocks of a devnet by as many new ones, the first of them holding the
transactions given (signed here at the nonces their senders had before the replaced blocks).

anvil drops the transactions of the replaced blocks (they are not put back in its pool, and their senders' nonces
go back). Each account of ``keep`` gets a 0-value transfer to itself for every nonce it used in the replaced blocks
that no given transaction takes again: its nonce on chain stays where the process's nonce sequence expects it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction

from proofmarket.chain import ChainClient

GAS = 3_000_000
Replacement = tuple[LocalAccount, ContractFunction | None]  # None: a 0-value transfer to itself


def reorg(client: ChainClient, depth: int, txs: Sequence[Replacement] = (), keep: Iterable[LocalAccount] = ()) -> int:
    """Replace the newest ``depth`` blocks; return the number of the first new block (which holds ``txs``)."""
    head = client.block_number()
    fork = head - depth
    base = int(client.w3.eth.get_block(fork)["baseFeePerGas"] or 0)
    fees = {"maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9}
    chain_id = client.chain_id
    nonces: dict[str, int] = {}
    raws: list[list[Any]] = []

    def add(account: LocalAccount, fn: ContractFunction | None) -> None:
        nonce = nonces.get(account.address)
        if nonce is None:
            nonce = int(client.w3.eth.get_transaction_count(account.address, fork))
        tx: dict[str, Any] = {"from": account.address, "nonce": nonce, "gas": GAS, "chainId": chain_id, **fees}
        tx = dict(fn.build_transaction(tx)) if fn is not None else {**tx, "to": account.address, "value": 0}  # type: ignore[arg-type]
        raws.append(["0x" + bytes(account.sign_transaction(tx).raw_transaction).hex(), 0])
        nonces[account.address] = nonce + 1

    for account, fn in txs:
        add(account, fn)
    for account in keep:
        used = int(client.w3.eth.get_transaction_count(account.address, head))
        while nonces.get(account.address, int(client.w3.eth.get_transaction_count(account.address, fork))) < used:
            add(account, None)
    client.rpc("anvil_reorg", [depth, raws])
    assert client.block_number() == head
    return fork + 1
