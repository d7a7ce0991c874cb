"""EventWatcher: decoded events, confirmation depth, resuming."""

from __future__ import annotations

import threading

import pytest
from chain_helpers import Chain, Listed

from proofmarket.chain import EventWatcher, input_commitment, mine

pytestmark = pytest.mark.chain


def test_watcher_waits_for_confirmations_and_resumes(chain: Chain, model: Listed) -> None:
    contracts = {"market": chain.market, "registry": chain.registry}
    start = chain.client.block_number() + 1
    watcher = EventWatcher(chain.client, contracts, from_block=start, confirmations=2)
    deadline = chain.client.timestamp() + 3600
    submitted = chain.market.request_inference(
        model.key, input_commitment([1, 2, 3]), deadline, chain.accounts.consumer
    )

    assert watcher.poll() == []  # one block deep, two needed
    mine(chain.client, 2)
    (event,) = watcher.poll()
    assert (event.contract, event.event) == ("market", "RequestCreated")
    assert event.args["requestId"] == submitted.request_id and event.block_number == submitted.tx.block_number
    assert event.tx_hash == submitted.tx.tx_hash
    assert watcher.poll() == []

    chain.registry.update_metadata(model.key, "bafy-v2", chain.accounts.owner)
    mine(chain.client, 2)
    resumed = EventWatcher(chain.client, contracts, from_block=watcher.next_block, confirmations=2)
    assert [e.event for e in resumed.poll()] == ["MetadataUpdated"]


def test_watcher_iterates_until_stopped(chain: Chain, model: Listed) -> None:
    watcher = EventWatcher(
        chain.client, {"market": chain.market}, from_block=0, confirmations=0, batch_size=3, poll_interval=0.01
    )
    stop = threading.Event()
    seen = []
    for event in watcher.events(stop):
        seen.append(event.event)
        if event.event == "Staked":
            stop.set()
    assert "ParamsApplied" in seen and seen[-1] == "Staked"
    # stopped mid-batch: resuming from next_block repeats the unfinished range, nothing is lost
    again = EventWatcher(chain.client, {"market": chain.market}, from_block=watcher.next_block, confirmations=0)
    assert "Staked" in [e.event for e in again.poll()]
