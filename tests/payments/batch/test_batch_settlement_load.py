"""Load: 50 concurrent clients on channels against 2 nodes sharing one database. Every voucher is charged once, and
the sum of the charges is what the chain paid out after the sweep (the owner's payout, the channels' claimed totals).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from eth_account import Account
from eth_utils.crypto import keccak
from paid_node import ADMIN, OWNER_INDEX, serve_node
from test_batch_settlement_node import sdk_session
from x402_helpers import Chain, Served, mlp_input

from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.payments.batch.store import DbChannelStorage
from proofmarket.payments.facilitator_server import build_facilitator, facilitator_app

PRICE = 1_500
CLIENTS = 50
CALLS = 4  # per client, alternating between the two nodes


@pytest.fixture(scope="module")
def nodes(home: Path, chain: Chain, mlp_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Served]]:
    """Two nodes on one database and one facilitator service (``proofmarket facilitator serve``'s app): the
    production layout (two in-process facilitators on one key would race for its nonces)."""
    db = tmp_path_factory.mktemp("shared-db") / "node.db"
    facilitator = facilitator_app(build_facilitator(chain.rpc_url, dev_account(8, DEVNET_CHAIN_ID)))
    patch = pytest.MonkeyPatch()
    try:
        with Served(facilitator) as served_facilitator:
            patch.setenv("PROOFMARKET_FACILITATOR_URL", served_facilitator.url)
            # the two nodes share one database, so one book and one account of their own (serve_node)
            # the sweep is the test's to ask for: no node sweeps on its own meanwhile (on a loaded machine the calls
            # took longer than the default interval once, and a node's own sweep took the charges first)
            quiet = {"channel_sweep_interval_s": 86_400.0, "channel_sweep_threshold_atomic": 10 ** 12}
            with serve_node(home, db, chain, mlp_id, PRICE, **quiet) as a, \
                    serve_node(home, db, chain, mlp_id, PRICE, **quiet) as b:
                yield [a, b]
    finally:
        patch.undo()


def test_fifty_clients_on_two_nodes_every_voucher_charged_once_and_paid_out(nodes: list[Served], chain: Chain,
                                                                            mlp_id: str) -> None:
    admin = dev_account(0, DEVNET_CHAIN_ID)
    owner = dev_account(OWNER_INDEX, DEVNET_CHAIN_ID)
    payers = [Account.from_key(keccak(f"channels-load-{i}".encode())) for i in range(CLIENTS)]
    for payer in payers:
        chain.usdc.mint(payer.address, 100 * PRICE, admin)
    owner_before = chain.balances(owner.address)[0]
    lock = threading.Lock()
    statuses: list[int] = []
    refusals: list[str] = []

    def client(i: int) -> None:
        session, _ = sdk_session(payers[i], chain.usdc.address, deposit_calls=CALLS + 1)
        for call in range(CALLS):
            node = nodes[(i + call) % 2]
            answer = session.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=300)
            with lock:
                statuses.append(answer.status_code)
                if answer.status_code != 200:
                    refusals.append(answer.text[:300])

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))

    assert statuses.count(200) == CLIENTS * CALLS, refusals[:3]
    services = [n.app.state.services for n in nodes]  # type: ignore[attr-defined]
    storage: DbChannelStorage = next(r for r in services[0].rails.all() if r.name == "batch-settlement").storage
    charges = storage.repo.charges()
    assert len(charges) == CLIENTS * CALLS and len({c.ticket for c in charges}) == len(charges)  # once each
    assert len({c.job_id for c in charges}) == len(charges)
    channels = storage.list()
    assert len(channels) == CLIENTS
    assert all(int(c.charged_cumulative_amount) == CALLS * PRICE for c in channels)

    swept = requests.post(f"{nodes[1].url}/v1/channels/sweep", headers={"Authorization": f"Bearer {ADMIN}"},
                          timeout=300)
    assert swept.status_code == 200, swept.text
    sweep = swept.json()["sweep"]
    total = CLIENTS * CALLS * PRICE
    assert sum(c.amount for c in charges) == total == int(sweep["amount"])
    # the payout: by the sweep's own run of the payouts, or (when the other node's settler held the payouts lease
    # at that moment, its run begun before this sweep settled) by the next run, asked here as an operator would
    deadline, last = time.monotonic() + 120, None
    while chain.balances(owner.address)[0] - owner_before != total and time.monotonic() < deadline:
        ran = requests.post(f"{nodes[0].url}/v1/payouts/run", headers={"Authorization": f"Bearer {ADMIN}"},
                            timeout=300)
        assert ran.status_code == 200, ran.text
        last = ran.json()
        time.sleep(0.5)
    paid = chain.balances(owner.address)[0] - owner_before
    assert paid == total, (paid, sweep, last)  # what the chain paid out (else: the sweep, the last payouts run)
    from proofmarket.chain.channels import channel_state

    on_chain = [channel_state(chain.client, c.channel_id) for c in channels]
    assert sum(s.total_claimed for s in on_chain) == total
