"""EventWatcher across reorgs (anvil_reorg): events read from blocks that leave the chain are read again from the
canonical chain; a reorg of blocks not yet deep enough changes nothing."""

from __future__ import annotations

import pytest
from chain_helpers import Chain, Listed
from reorg import reorg

from proofmarket.chain import EventWatcher, input_commitment, mine

pytestmark = pytest.mark.chain


def _request_fn(chain: Chain, model: Listed, commitment: bytes, deadline: int):  # type: ignore[no-untyped-def]
    return chain.market.contract.functions.requestInference(model.key, commitment, deadline)


def test_a_reorg_below_events_read_rolls_back_and_reads_the_canonical_events(chain: Chain, model: Listed) -> None:
    client, consumer = chain.client, chain.accounts.consumer
    rolled: list[int] = []
    watcher = EventWatcher(client, {"market": chain.market}, from_block=client.block_number() + 1, confirmations=1,
                           on_rollback=rolled.append)
    mine(client, 2)
    assert watcher.poll() == []
    kept = watcher.next_block - 1  # read, and stays canonical
    deadline = client.timestamp() + 3600
    first = chain.market.request_inference(model.key, input_commitment([1, 2, 3]), deadline, consumer)
    mine(client, 1)
    (event,) = watcher.poll()
    assert event.args["requestId"] == first.request_id and event.block_number == first.tx.block_number
    mine(client, 2)
    assert watcher.poll() == [] and watcher.next_block == client.block_number()

    # the request's block and those after it are replaced: another request under the same id
    other = input_commitment([4, 5, 6])
    depth = client.block_number() - kept
    new_block = reorg(client, depth, [(consumer, _request_fn(chain, model, other, deadline))], keep=[consumer])
    assert watcher.rolled_back_from is None

    events = watcher.poll()

    assert rolled == [kept + 1] and watcher.rolled_back_from == kept + 1
    assert [(e.event, e.args["requestId"], bytes(e.args["inputCommitment"])) for e in events] == [
        ("RequestCreated", first.request_id, other)]
    assert events[0].block_number == new_block and events[0].tx_hash != first.tx.tx_hash
    assert watcher.poll() == [] and rolled == [kept + 1]  # once
    # the consumer's nonce sequence still matches the chain: it can send again
    again = chain.market.request_inference(model.key, input_commitment([7]), deadline, consumer)
    assert again.request_id == first.request_id + 1


def test_a_reorg_above_the_confirmation_depth_changes_nothing(chain: Chain, model: Listed) -> None:
    client, consumer = chain.client, chain.accounts.consumer
    rolled: list[int] = []
    watcher = EventWatcher(client, {"market": chain.market}, from_block=client.block_number() + 1, confirmations=3,
                           on_rollback=rolled.append)
    mine(client, 4)
    assert watcher.poll() == []  # blocks read (and remembered) below the reorg
    deadline = client.timestamp() + 3600
    first = chain.market.request_inference(model.key, input_commitment([1, 2, 3]), deadline, consumer)
    mine(client, 1)
    assert watcher.poll() == []  # two blocks deep, three needed

    other = input_commitment([4, 5, 6])
    reorg(client, 2, [(consumer, _request_fn(chain, model, other, deadline))], keep=[consumer])
    assert watcher.poll() == []
    mine(client, 2)
    events = watcher.poll()

    assert rolled == [] and watcher.rolled_back_from is None
    assert [(e.args["requestId"], bytes(e.args["inputCommitment"])) for e in events] == [(first.request_id, other)]


def test_a_chain_cut_below_the_last_block_read_is_read_again(chain: Chain, model: Listed) -> None:
    """evm_revert shortens the chain: the last block read is gone, the watcher goes back to the newest it still
    finds and sees the events mined after."""
    client = chain.client
    rolled: list[int] = []
    watcher = EventWatcher(client, {"market": chain.market}, from_block=client.block_number() + 1, confirmations=0,
                           on_rollback=rolled.append)
    mine(client, 1)
    watcher.poll()
    kept = watcher.next_block - 1
    snapshot = client.rpc("evm_snapshot", [])
    deadline = client.timestamp() + 3600
    chain.market.request_inference(model.key, input_commitment([1]), deadline, chain.accounts.consumer)
    mine(client, 3)
    assert [e.event for e in watcher.poll()] == ["RequestCreated"]
    client.rpc("evm_revert", [snapshot])

    assert watcher.poll() == [] and rolled == [kept + 1] and watcher.next_block == kept + 1
