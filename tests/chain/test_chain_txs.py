"""Transactions on a chain that does not mine at once: a dropped transaction is re-sent with the same nonce and
higher fees, the fee cap is kept, and two clients of one key share one nonce sequence."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from chain_helpers import USDC, Chain
from web3.exceptions import TransactionNotFound

from proofmarket.chain import dev_account
from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import UsdcToken
from proofmarket.chain.txs import Submission, bumped, fees
from proofmarket.core.errors import ChainError, FeeTooHigh, TransactionNotMined
from proofmarket.core.profiles import GasPolicy


def _pool_hashes(client: ChainClient) -> list[str]:
    content = client.rpc("txpool_content", [])
    return [tx["hash"] for by_sender in content["pending"].values() for tx in by_sender.values()]


def _wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def manual_mining(chain: Chain) -> Any:
    chain.client.rpc("evm_setAutomine", [False])
    try:
        yield chain
    finally:
        chain.client.rpc("evm_setAutomine", [True])


def test_a_dropped_transaction_is_sent_again_with_the_same_nonce_and_higher_fees(manual_mining: Chain) -> None:
    chain = manual_mining
    policy = GasPolicy(max_fee_gwei=100.0, priority_fee_gwei=1.0, resend_after_s=0.5)
    client = ChainClient(chain.client.rpc_url, gas=policy)
    token = UsdcToken(client, chain.usdc.address)
    sender, payee = chain.accounts.consumer, chain.accounts.owner
    before = chain.usdc.balance_of(payee.address)
    nonce = client.w3.eth.get_transaction_count(sender.address, "pending")
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(token.transfer(payee.address, 3 * USDC, sender)))
    worker.start()
    first = _wait_for(lambda: _pool_hashes(client))[0]
    first_tx = client.w3.eth.get_transaction(first)
    client.rpc("anvil_dropTransaction", [first])  # the mempool lost it (evicted, a node restarted)
    second = _wait_for(lambda: [h for h in _pool_hashes(client) if h != first])[0]
    second_tx = client.w3.eth.get_transaction(second)
    assert second_tx["nonce"] == first_tx["nonce"] == nonce
    assert second_tx["maxFeePerGas"] > first_tx["maxFeePerGas"]
    assert second_tx["maxPriorityFeePerGas"] > first_tx["maxPriorityFeePerGas"]
    client.rpc("anvil_mine", ["0x1"])
    worker.join(30)
    assert results and results[0].tx_hash == second
    assert chain.usdc.balance_of(payee.address) == before + 3 * USDC  # paid once
    assert client.w3.eth.get_transaction_count(sender.address) == nonce + 1


def test_a_pending_transaction_is_replaced_and_only_one_version_is_mined(manual_mining: Chain) -> None:
    chain = manual_mining
    policy = GasPolicy(max_fee_gwei=100.0, priority_fee_gwei=1.0, resend_after_s=0.3)
    client = ChainClient(chain.client.rpc_url, gas=policy)
    token = UsdcToken(client, chain.usdc.address)
    sender, payee = chain.accounts.consumer, chain.accounts.owner
    before = chain.usdc.balance_of(payee.address)
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(token.transfer(payee.address, 2 * USDC, sender)))
    worker.start()
    first = _wait_for(lambda: _pool_hashes(client))[0]
    replaced = _wait_for(lambda: [h for h in _pool_hashes(client) if h != first])[0]  # the pool swapped it
    client.rpc("anvil_mine", ["0x1"])
    worker.join(30)
    assert results and results[0].tx_hash == replaced
    assert chain.usdc.balance_of(payee.address) == before + 2 * USDC


def test_two_clients_of_one_key_share_its_nonces(manual_mining: Chain) -> None:
    chain = manual_mining
    a, b = (ChainClient(chain.client.rpc_url) for _ in range(2))
    sender, payee = chain.accounts.consumer, chain.accounts.owner
    before = chain.usdc.balance_of(payee.address)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda c=c: results.append(
        UsdcToken(c, chain.usdc.address).transfer(payee.address, USDC, sender))) for c in (a, b, a, b)]
    for t in threads:
        t.start()
    _wait_for(lambda: len(_pool_hashes(a)) == 4)
    a.rpc("anvil_mine", ["0x1"])
    for t in threads:
        t.join(30)
    assert len(results) == 4 and chain.usdc.balance_of(payee.address) == before + 4 * USDC


def test_the_fee_cap_is_kept(chain: Chain) -> None:
    base = int(chain.client.w3.eth.get_block("latest")["baseFeePerGas"])
    low = GasPolicy(max_fee_gwei=base / 2 / 1e9, priority_fee_gwei=0.0)
    with pytest.raises(FeeTooHigh, match="above the fee cap"):
        fees(chain.client.w3, low)
    capped = GasPolicy(max_fee_gwei=(base * 1.5) / 1e9, priority_fee_gwei=0.0)
    got = fees(chain.client.w3, capped)
    assert base <= got["maxFeePerGas"] <= capped.max_fee_wei
    assert got["maxPriorityFeePerGas"] <= got["maxFeePerGas"] - base
    at_cap = {"maxFeePerGas": capped.max_fee_wei, "maxPriorityFeePerGas": 1}
    assert bumped(at_cap, capped) is None  # no room for a replacement: wait instead
    client = ChainClient(chain.client.rpc_url, gas=low)
    with pytest.raises(FeeTooHigh):
        UsdcToken(client, chain.usdc.address).transfer(chain.accounts.owner.address, USDC, chain.accounts.consumer)


def test_a_transaction_in_flight_on_one_devnet_does_not_move_another_devnets_nonces(
        manual_mining: Chain, tmp_path: Any) -> None:
    """Two local devnets answer the same chain id with the same dev accounts: the nonce sequence of one (a
    transaction waiting to be mined there) is not the other's, where a nonce taken from it would wait forever
    behind a gap (the fresh-clone CI's escrow fixtures hung on this)."""
    from chain_helpers import anvil_or_skip

    from proofmarket.chain import Devnet
    from proofmarket.chain.artifacts import load_artifact

    chain = manual_mining
    sender, payee = chain.accounts.consumer, chain.accounts.owner
    busy = ChainClient(chain.client.rpc_url)
    worker = threading.Thread(target=lambda: UsdcToken(busy, chain.usdc.address).transfer(payee.address, USDC, sender),
                              daemon=True)
    worker.start()
    _wait_for(lambda: _pool_hashes(busy))  # in flight on the busy chain, not mined
    try:
        with Devnet(tmp_path / "other", anvil=anvil_or_skip()) as other:
            client = ChainClient(other.rpc_url, receipt_timeout=20)
            assert client.chain_id == busy.chain_id and client.chain_key != busy.chain_key
            fresh = client.w3.eth.get_transaction_count(sender.address, "pending")
            _, result = client.deploy(load_artifact("TestUSDC"), sender, sender.address)  # mined, not stuck
            assert client.w3.eth.get_transaction(result.tx_hash)["nonce"] == fresh
    finally:
        busy.rpc("anvil_mine", ["0x1"])
        worker.join(30)


class _StuckPool:
    """A unit-test double of ``w3``: a pool that holds every transaction sent until ``mine`` is called (anvil's
    automine leaving a ready transaction behind); the account's mined and pending nonce counts are given."""

    def __init__(self, mined_nonce: int, pending_nonce: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.mined = False
        self.counts = {"latest": mined_nonce, "pending": mined_nonce if pending_nonce is None else pending_nonce}
        self.eth = self

    def send_raw_transaction(self, raw: bytes) -> bytes:
        self.sent.append(bytes(raw))
        return bytes([len(self.sent)]) * 32

    def get_transaction_receipt(self, tx_hash: str) -> dict[str, int]:
        if not self.mined:
            raise TransactionNotFound(tx_hash)
        return {"blockNumber": 1, "status": 1}

    def get_transaction(self, tx_hash: str) -> dict[str, str]:
        return {"hash": tx_hash}

    def get_transaction_count(self, address: str, block: str) -> int:
        return self.counts[block]

    def mine(self) -> None:
        self.mined = True


def _submission(pool: _StuckPool, nonce: int, flush: Any) -> Submission:
    tx = {"to": "0x" + "11" * 20, "value": 0, "gas": 21_000, "nonce": nonce, "chainId": 31337,
          "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**9}
    policy = GasPolicy(max_fee_gwei=100.0, priority_fee_gwei=1.0, resend_after_s=0.05)
    submission = Submission(pool, dev_account(1, 31337), tx, policy, flush=flush)  # type: ignore[arg-type]
    submission.send()
    return submission


def test_a_transaction_an_automining_devnet_left_in_its_pool_is_mined_by_a_flush_not_re_sent() -> None:
    pool = _StuckPool(mined_nonce=0)
    submission = _submission(pool, 0, pool.mine)
    tx_hash, receipt = submission.wait(timeout=5, block_time_s=0)
    assert receipt["status"] == 1 and tx_hash == submission.hashes[0]
    assert len(pool.sent) == 1 and submission.resends == 0  # mined as sent: no replacement at higher fees


@pytest.mark.parametrize(("mined", "pending", "says"), [
    (4, 4, r"below 4 of 0x\w+: a gap"),
    (4, 7, "earlier ones are pending"),
    (7, 7, "nonce 6 was used by another transaction"),
])
def test_a_transaction_that_is_not_next_in_line_is_not_flushed_and_its_timeout_says_why(
        mined: int, pending: int, says: str) -> None:
    pool = _StuckPool(mined_nonce=mined, pending_nonce=pending)
    flushed: list[bool] = []
    submission = _submission(pool, 6, lambda: flushed.append(True))
    with pytest.raises(TransactionNotMined, match=says) as raised:
        submission.wait(timeout=0.4, block_time_s=0)
    assert not flushed and submission.resends >= 1  # re-sent at higher fees; no block mined for it
    assert raised.value.details["hashes"] == submission.hashes


class _Rpc:
    """A unit-test double of a devnet's JSON-RPC: what ``anvil_getAutomine`` answers, and the calls made."""

    def __init__(self, automine: object) -> None:
        self.automine = automine
        self.calls: list[str] = []

    def rpc(self, method: str, params: list[Any]) -> Any:
        self.calls.append(method)
        if isinstance(self.automine, Exception):
            raise self.automine
        return self.automine if method == "anvil_getAutomine" else None


@pytest.mark.parametrize(("automine", "mined"), [(True, True), (False, False),
                                                 (ChainError("anvil_getAutomine failed: method not found"), False)])
def test_a_flush_mines_a_block_only_on_an_automining_anvil(automine: object, mined: bool) -> None:
    """A test that paused mining keeps its pending transactions; a devnet without anvil's methods (Hardhat answers
    31337 too) is left to the re-sends."""
    node = _Rpc(automine)
    ChainClient._flush_automine(node)  # type: ignore[arg-type]
    assert ("evm_mine" in node.calls) is mined
