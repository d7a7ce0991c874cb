"""The nonce cache of one process (``chain/txs.Nonces``): a transaction confirmed while another is being numbered
is counted done (found by a shuffled run: two challenges sent 6 ms apart left an account "in flight" for good, every
later nonce came from the cache, and after the devnet was reverted the next transaction waited in a nonce gap)."""

from __future__ import annotations

from proofmarket.chain.txs import Nonces

CHAIN, ACCOUNT = ("devnet", "0xgenesis"), "0x15d34aaf54267db7d7c367839aaf71a00a2c6a65"


def test_a_transaction_done_while_another_takes_its_nonce_is_not_forgotten() -> None:
    nonces, chain_count = Nonces(), [0]
    first = nonces.take(CHAIN, ACCOUNT, lambda: chain_count[0])

    def pending_while_the_first_is_mined() -> int:
        chain_count[0] = 1
        nonces.done(CHAIN, ACCOUNT)  # another thread: the first transaction's receipt arrives during this RPC
        return chain_count[0]

    second = nonces.take(CHAIN, ACCOUNT, pending_while_the_first_is_mined)
    nonces.done(CHAIN, ACCOUNT)
    assert (first, second) == (0, 1)
    chain_count[0] = 0  # the devnet is reverted: with nothing in flight, the chain's count is the answer
    assert nonces.take(CHAIN, ACCOUNT, lambda: chain_count[0]) == 0


def test_while_one_is_in_flight_the_higher_of_the_cache_and_the_chain_is_taken() -> None:
    nonces = Nonces()
    assert nonces.take(CHAIN, ACCOUNT, lambda: 4) == 4
    assert nonces.take(CHAIN, ACCOUNT, lambda: 4) == 5  # an RPC that does not count our last transaction yet
