"""Load and faults over real HTTP (loopback, bounded, self-stopping): 100 concurrent paying clients against 2 nodes
on one database and one redis-server, with 3 ``proofmarket worker`` processes. Every call is answered (no 5xx),
every answer verifies, every payer is charged exactly once, and no job is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from x402_helpers import PRICE, Chain, Served, node_settings

from proofmarket.api import create_app
from proofmarket.calls.redis_server import redis_server
from proofmarket.chain import dev_account
from proofmarket.db import CallRepo, Database
from proofmarket.sdk.client import Client

pytestmark = pytest.mark.slow
CLIENTS, NODES, WORKERS = 100, 2, 3


def _payer(i: int) -> LocalAccount:
    account: LocalAccount = Account.from_key(keccak(f"proofmarket-load-payer-{i}".encode()))
    return account


def test_100_paying_clients_two_nodes_three_workers(chain: Chain, node_home: Path, mlp_id: str,
                                                    payee: LocalAccount, tmp_path: Path) -> None:
    with redis_server() as redis:
        if redis is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is needed in CI (.ci/run installs it)")
            pytest.skip("redis-server is not installed")
        db = tmp_path / "shared.db"
        settings = node_settings(node_home, db, chain.rpc_url, chain.deployment_file, queue="celery",
                                 redis_url=redis.url, infer_wait_s=300.0)
        minter = dev_account(0, chain.client.chain_id)
        payers = [_payer(i) for i in range(CLIENTS)]
        for p in payers:
            chain.usdc.mint(p.address, 2 * PRICE, minter)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
               "PROOFMARKET_HOME": str(node_home), "PROOFMARKET_DATABASE_URL": f"sqlite:///{db}",
               "PROOFMARKET_REDIS_URL": redis.url}
        apps = [create_app(settings) for _ in range(NODES)]
        for app in apps:
            app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
        workers = [subprocess.Popen([sys.executable, "-m", "proofmarket.cli.main", "worker", "--name", f"w{i}"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for i in range(WORKERS)]
        try:
            with Served(apps[0]) as first, Served(apps[1]) as second:
                urls = [first.url, second.url]
                import httpx

                deadline = time.monotonic() + 120
                while httpx.get(f"{first.url}/health").json()["provers_warm"] < WORKERS:
                    assert time.monotonic() < deadline, "the workers did not start"
                    time.sleep(0.2)
                payee_before = chain.usdc.balance_of(payee.address)

                def call(i: int) -> Any:
                    doc = {"input_data": [[round(0.003 * i + 0.01 * j, 5) for j in range(8)]]}
                    with Client(urls[i % NODES], account=payers[i], cache_dir=tmp_path / f"c{i % 4}",
                                devnet=True, timeout=600) as sdk:
                        return sdk.infer(mlp_id, doc)  # verified by the SDK (raises otherwise)

                with ThreadPoolExecutor(CLIENTS) as pool:
                    results = list(pool.map(call, range(CLIENTS)))
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(30)
            for app in apps:
                app.state.services.close()
        assert all(r.status == "settled" for r in results), [r.status for r in results]
        assert len({r.job_id for r in results}) == CLIENTS
        charged = [2 * PRICE - chain.usdc.balance_of(p.address) for p in payers]
        assert charged == [PRICE] * CLIENTS  # each payer charged exactly once
        assert chain.usdc.balance_of(payee.address) - payee_before == CLIENTS * PRICE
        counts = CallRepo(Database(f"sqlite:///{db}")).counts()
        assert counts == {"settled": CLIENTS}, counts  # none lost, none failed, none left half-done
