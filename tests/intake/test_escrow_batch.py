"""The escrow watcher settles requests of one model that waited together with one batch proof and one fulfillBatch;
a request made before the model's batch verifiers were registered is proven alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from escrow_helpers import (
    MLP_CANDIDATE,
    OWNER_SHARE_BPS,
    PRICE,
    AppFactory,
    EscrowEnv,
    compile_mlp,
    sample_inputs,
    wait_status,
)
from fastapi.testclient import TestClient

from proofmarket.chain import advance_time
from proofmarket.chain.types import RequestStatus
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ids import PROVEN_SYSTEM

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture(scope="module")
def batch_model(env: EscrowEnv) -> str:
    """The sample MLP with a batch circuit of 4 calls, listed with its batch verifier."""
    model_id = compile_mlp(env.ws, "public", MLP_CANDIDATE, batch_sizes=(4,), name="mlp-batched").model_id
    assert set(env.market.register_model(model_id, PRICE, OWNER_SHARE_BPS).batch_verifiers) == {4}
    advance_time(env.market.client, 1)
    return model_id


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not done in {timeout_s} s: {what}"
        time.sleep(0.02)


def test_requests_waiting_together_are_settled_by_one_fulfil_batch(env: EscrowEnv, make_app: AppFactory,
                                                                   batch_model: str) -> None:
    app = make_app(batch_window_ms=20)
    app.state.services.catalog.register(batch_model, price_atomic=2_500_000)
    receipts = [env.market.request(batch_model, doc) for doc in sample_inputs(5)]
    sent_on: list[str] = []  # the thread of each fulfillBatch: the call settler's, through the escrow rail
    with TestClient(app) as client:
        market = app.state.escrow.market
        submit_batch = market.submit_batch

        def recorded(*args: Any, **kwargs: Any) -> Any:
            sent_on.append(threading.current_thread().name)
            return submit_batch(*args, **kwargs)

        market.submit_batch = recorded
        for r in receipts:
            wait_status(client, r.request_id, ("seen",), timeout_s=10)
        services = app.state.services
        prover_lock = services.queue.workers[0].get(PROVEN_SYSTEM).prover.worker._lock
        with prover_lock:  # the node's one prover thread will be busy with another model's call, blocked on it
            with app.state.escrow._work_lock:  # the inputs arrive while the watcher is busy: it finds all five
                for r, doc in zip(receipts, sample_inputs(5), strict=True):
                    posted = client.post(f"/v1/requests/{r.request_id}/input", json={"input": doc})
                    assert posted.status_code == 202, posted.text
                blocker, _ = services.calls.submit_prove(env.public, sample_inputs(1)[0], key="blocker")
                _until(lambda: services.calls.get(blocker.id).status != "queued", "the prover took the blocker")
            # the watcher claims the five and queues their proofs behind it: the first proof taken then finds three
            # more waiting (the largest batch is 4), the fifth is proven alone
            _until(lambda: services.queue.depth() >= 5, "the watcher queued the five proofs")
        done = [wait_status(client, r.request_id, ("fulfilled", "failed")) for r in receipts]
    assert all(d["status"] == "fulfilled" for d in done), done
    bundles = [ProofBundle.parse(env.ws.store.get_json(d["bundle_cid"])) for d in done]
    together = [d for d, b in zip(done, bundles, strict=True) if b.batch is not None]
    assert len(together) == 4 and len({d["fulfil_tx"] for d in together}) == 1  # one fulfillBatch for four
    assert len(sent_on) == 1 and sent_on[0].startswith("proofmarket-settle"), sent_on  # sent by the call settler
    assert len({d["fulfil_tx"] for d in done}) == 2  # and the one proven alone by fulfill
    for r in receipts:
        onchain = env.market.market.get_request(r.request_id)
        assert onchain.status is RequestStatus.FULFILLED
    receipt = env.market.client.w3.eth.get_transaction_receipt(together[0]["fulfil_tx"])
    assert receipt["gasUsed"] < 4 * 300_000  # one verification shared by four requests
