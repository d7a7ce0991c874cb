"""Mixed load on one book: 2 nodes on one PostgreSQL, clients paying by x402 exact, channels, credits and passes at
once, on models of three owners (none of them holds anything before), with adversaries among them (the fifth
review): channel payers who arm their withdrawal at once and keep calling, sybil wallets after the free tier, a
funded one trying to spend the free tier's held minimum, and a fourth owner the token refuses (blocklisted).
Afterwards: the sweep and the payouts run, the ledger check finds no difference with the chain and shows the node
solvent and the blocked payee, each owner's on-chain receipts are exactly what its models sold on every rail (the
blocked one's stay owed), every call that was answered was charged once, no refused call was charged, and every
channel's charged total is claimed on chain (nothing served on credit the node could not collect).
Cached proofs (one input per model): the money is what runs."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import db_backends
import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from paid_node import ADMIN, node_signer, serve_node
from pg_server import fresh_database
from test_batch_settlement_node import sdk_session
from test_money_book import key_of, x402_session
from x402.http import decode_payment_required_header
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402_helpers import Chain, Served, funded_wallet, mlp_input

from proofmarket.chain import dev_account
from proofmarket.chain.channels import channel_state
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.address_signature import sign_headers
from proofmarket.payments.batch.rail import BatchSettlementRail
from proofmarket.payments.facilitator_server import build_facilitator, facilitator_app

pg_url = db_backends.pg_url  # the session's PostgreSQL (a fixture)
PRICE = 2_000
CALLS = 3  # per client
FREE_MINIMUM = 100_000  # PROOFMARKET_FREE_MIN_BALANCE_ATOMIC's default


@pytest.fixture(scope="module")
def nodes(home: Path, chain: Chain, mlp_id: str, pg_url: str | None,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Served]]:
    if pg_url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is needed in CI (initdb/pg_ctl + psycopg, or TEST_POSTGRES_URL)")
        pytest.skip("no PostgreSQL here (initdb/pg_ctl + psycopg, or TEST_POSTGRES_URL)")
    database = fresh_database(pg_url)
    facilitator = facilitator_app(build_facilitator(chain.rpc_url, dev_account(8, DEVNET_CHAIN_ID)))
    unused = tmp_path_factory.mktemp("unused") / "node.db"
    with pytest.MonkeyPatch.context() as env, Served(facilitator) as served_facilitator:
        env.setenv("PROOFMARKET_FACILITATOR_URL", served_facilitator.url)
        env.setenv("PROOFMARKET_CHANNEL_MIN_DEPOSIT_CALLS", str(CALLS + 1))
        with serve_node(home, unused, chain, mlp_id, PRICE, database_url=database) as a, \
                serve_node(home, unused, chain, mlp_id, PRICE, database_url=database) as b:
            yield [a, b]


def owners_and_models(node: Served, mlp_id: str) -> dict[str, LocalAccount]:
    """Three models (the compiled MLP under three names) of three owners who hold nothing."""
    services = node.app.state.services  # type: ignore[attr-defined]
    manifest = services.workspace.store.get_json(mlp_id)
    out = {}
    for i in range(3):
        owner: LocalAccount = Account.from_key(keccak(text=f"money-load-owner-{i}"))
        model_id = services.workspace.store.put_json({**manifest, "name": f"owned-{i}"})
        services.catalog.register(model_id, price_atomic=PRICE, owner=owner.address, name=f"owned-{i}")
        out[model_id] = owner
    return out


def fund(chain: Chain, tag: str) -> LocalAccount:
    return funded_wallet(chain, f"money-load-{tag}", 100 * PRICE)


def blocked_owner_model(node: Served, mlp_id: str, chain: Chain) -> tuple[str, LocalAccount]:
    """A fourth model whose owner the token refuses (USDC blocklists addresses; the devnet's token can too)."""
    services = node.app.state.services  # type: ignore[attr-defined]
    owner: LocalAccount = Account.from_key(keccak(text="money-load-blocked-owner"))
    model_id = services.workspace.store.put_json({**services.workspace.store.get_json(mlp_id), "name": "blocked"})
    services.catalog.register(model_id, price_atomic=PRICE, owner=owner.address, name="blocked")
    chain.client.transact(chain.usdc.contract.functions.setBlocked(owner.address, True),
                          dev_account(0, DEVNET_CHAIN_ID))
    return model_id, owner


def test_every_rail_on_two_nodes_one_book_owners_paid_exactly_and_the_chain_agrees(
        nodes: list[Served], chain: Chain, mlp_id: str) -> None:
    models = owners_and_models(nodes[0], mlp_id)
    ids = sorted(models)
    before = {m: chain.balances(o.address)[0] for m, o in models.items()}
    assert set(before.values()) == {0}
    blocked_model, blocked_owner = blocked_owner_model(nodes[0], mlp_id, chain)
    sold: dict[str, int] = defaultdict(int)
    failures: list[str] = []
    refused: list[int] = []  # what the adversaries were refused (402s): never charged
    lock = threading.Lock()

    def record(answer: requests.Response, model_id: str, *, may_refuse: bool = False) -> None:
        with lock:
            if answer.status_code == 200:
                sold[model_id] += int(answer.json()["payment"]["amount"])
            elif may_refuse and answer.status_code == 402:
                refused.append(402)
            else:
                failures.append(f"{answer.status_code} {answer.text[:200]}")

    def exact(i: int) -> None:
        session = x402_session(chain, fund(chain, f"exact-{i}"))
        for call in range(CALLS):
            model_id = ids[(i + call) % 3]
            record(session.post(f"{nodes[call % 2].url}/v1/models/{model_id}/infer", json=mlp_input(),
                                timeout=300), model_id)

    def channel(i: int) -> None:
        session, _ = sdk_session(fund(chain, f"channel-{i}"), chain.usdc.address, deposit_calls=CALLS + 1)
        for call in range(CALLS):
            model_id = ids[(i + call + 1) % 3]
            record(session.post(f"{nodes[(i + call) % 2].url}/v1/models/{model_id}/infer", json=mlp_input(),
                                timeout=300), model_id)

    def keyed(i: int, *, pass_model: str | None) -> None:
        wallet = fund(chain, f"keyed-{i}-{pass_model is not None}")
        session = x402_session(chain, wallet)
        if pass_model is None:
            bought = session.post(f"{nodes[i % 2].url}/v1/credits/buy", params={"amount": CALLS * PRICE}, timeout=300)
        else:
            bought = session.post(f"{nodes[i % 2].url}/v1/passes/buy", timeout=300,
                                  params={"calls_per_day": CALLS, "days": 1, "model_id": pass_model})
        assert bought.status_code == 200, bought.text
        key = key_of(nodes[i % 2], wallet)
        for call in range(CALLS):
            model_id = pass_model or ids[(i + call + 2) % 3]
            answer = requests.post(f"{nodes[call % 2].url}/v1/models/{model_id}/infer", json=mlp_input(),
                                   timeout=300, headers={"Authorization": f"Bearer {key}"})
            if answer.status_code == 200 and answer.json()["payment"]["source"] == "pass":
                with lock:  # a pass call pays the model's payee the pass's price per call
                    sold[model_id] += PRICE
                continue
            record(answer, model_id)

    def exiting(i: int) -> None:
        """Opens a channel, arms a withdrawal of all of it at once, and keeps calling."""
        payer = fund(chain, f"exiting-{i}")
        session, scheme = sdk_session(payer, chain.usdc.address, deposit_calls=CALLS + 1)
        model_id = ids[i % 3]
        first = session.post(f"{nodes[i % 2].url}/v1/models/{model_id}/infer", json=mlp_input(), timeout=300)
        record(first, model_id)
        terms = next(a for a in decode_payment_required_header(requests.post(
            f"{nodes[0].url}/v1/models/{model_id}/infer", json=mlp_input(), timeout=60).headers["PAYMENT-REQUIRED"]
                                                              ).accepts if a.scheme == "batch-settlement")
        config = to_contract_channel_config(scheme.build_channel_config(terms))
        contract = chain.client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)
        channel_id = "0x" + bytes(chain.client.call(contract.functions.getChannelId(config))).hex()
        chain.client.transact(contract.functions.initiateWithdraw(
            config, channel_state(chain.client, channel_id).available), payer)
        for call in range(CALLS):
            record(session.post(f"{nodes[(i + call) % 2].url}/v1/models/{model_id}/infer", json=mlp_input(),
                                timeout=300), model_id, may_refuse=True)

    def sybils() -> None:
        """Unfunded wallets get no free call; a funded one gets its free call and cannot spend the held minimum."""
        owner = models[ids[0]]
        quota = requests.post(f"{nodes[0].url}/v1/models/{ids[0]}/free-quota", json={"calls_per_day": 1},
                              timeout=30, headers=sign_headers(owner, node_signer(nodes[0]), f"free-quota-{ids[0]}-1"))
        assert quota.status_code == 200, quota.text
        for n in range(3):
            key = key_of(nodes[n % 2], funded_wallet(chain, f"money-load-sybil-{n}", 0))
            record(requests.post(f"{nodes[n % 2].url}/v1/models/{ids[0]}/infer", json=mlp_input(), timeout=300,
                                 headers={"Authorization": f"Bearer {key}"}), ids[0], may_refuse=True)
        wallet = funded_wallet(chain, "money-load-free-minimum", FREE_MINIMUM)
        bought = x402_session(chain, wallet).post(f"{nodes[1].url}/v1/credits/buy", params={"amount": FREE_MINIMUM},
                                                  timeout=300)
        assert bought.status_code == 200, bought.text
        key = key_of(nodes[1], wallet)
        free = requests.post(f"{nodes[1].url}/v1/models/{ids[0]}/infer", json=mlp_input(), timeout=300,
                             headers={"Authorization": f"Bearer {key}"})
        assert free.status_code == 200 and free.json()["payment"]["source"] == "free", free.text
        spend = requests.post(f"{nodes[0].url}/v1/models/{ids[1]}/infer", json=mlp_input(), timeout=300,
                              headers={"Authorization": f"Bearer {key}"})
        assert spend.status_code == 402 and "funded minimum" in spend.json()["error"]["message"], spend.text

    def blocked_payee_calls() -> None:
        wallet = fund(chain, "blocked-payee-buyer")
        bought = x402_session(chain, wallet).post(f"{nodes[0].url}/v1/credits/buy",
                                                  params={"amount": CALLS * PRICE}, timeout=300)
        assert bought.status_code == 200, bought.text
        key = key_of(nodes[0], wallet)
        for call in range(CALLS):
            record(requests.post(f"{nodes[call % 2].url}/v1/models/{blocked_model}/infer", json=mlp_input(),
                                 timeout=300, headers={"Authorization": f"Bearer {key}"}), blocked_model)

    jobs: list[Any] = []
    with ThreadPoolExecutor(max_workers=12) as pool:
        jobs += [pool.submit(exact, i) for i in range(4)]
        jobs += [pool.submit(channel, i) for i in range(4)]
        jobs += [pool.submit(keyed, i, pass_model=None) for i in range(3)]
        jobs += [pool.submit(keyed, i, pass_model=ids[i]) for i in range(2)]
        jobs += [pool.submit(exiting, i) for i in range(2)]
        jobs += [pool.submit(sybils), pool.submit(blocked_payee_calls)]
        for job in jobs:
            job.result()
    assert failures == []
    assert len(refused) >= 3  # the sybils, and the exiting payers once their exit was read
    assert sold.pop(blocked_model) == CALLS * PRICE
    honest = (4 + 4 + 3 + 2) * CALLS * PRICE
    assert sum(sold.values()) - honest == 2 * PRICE + (2 * CALLS - (len(refused) - 3)) * PRICE

    admin = {"Authorization": f"Bearer {ADMIN}"}
    swept = requests.post(f"{nodes[1].url}/v1/channels/sweep", headers=admin, timeout=300)
    assert swept.status_code == 200, swept.text
    # the exiting channels made the nodes' own sweepers claim at once: this sweep may find nothing left to do
    assert swept.json()["sweep"] is None or swept.json()["sweep"]["status"] == "distributed", swept.text
    channels = nodes[0].app.state.services.rails.of(BatchSettlementRail)  # type: ignore[attr-defined]
    assert channels.storage.repo.charges(unswept=True) == []  # every charge swept, by one node or the other
    if channels.storage.repo.sweeps(status="settled"):  # one still paying out: its payouts finish now
        channels.sweeper.run()
    paid = requests.post(f"{nodes[0].url}/v1/payouts/run", headers=admin, timeout=300)
    assert paid.status_code == 200 and paid.json()["ran"], paid.text
    assert blocked_owner.address.lower() in paid.json()["payouts"]["blocked"]  # skipped, the others paid
    for model_id, owner in models.items():  # what each owner's models sold on every rail, on chain, exactly
        assert chain.balances(owner.address)[0] - before[model_id] == sold[model_id], model_id
    checked = requests.get(f"{nodes[1].url}/v1/ledger/check", headers=admin, timeout=300).json()
    assert checked["ok"], checked["differences"]
    assert checked["solvency"]["solvent"] and int(checked["solvency"]["owed"]) >= CALLS * PRICE  # the blocked share
    assert list(checked["blocked_payees"]) == [blocked_owner.address.lower()]

    services = nodes[0].app.state.services  # type: ignore[attr-defined]
    settled = [j for j in services.calls.repo.recent(1000) if j.model_id in models and j.status == "settled"]
    assert len(settled) == sum(sold.values()) // PRICE + 1  # every answered call (and the one free call) once
    assert len({j.payment_nonce for j in settled}) == len(settled)  # charged once
    book = services.money.book
    blocked_account = f"payee:{blocked_owner.address.lower()}"
    assert book.accounts("payee:")[blocked_account].available == CALLS * PRICE  # owed, kept for it
    assert all(b.available == 0 for a, b in book.accounts("payee:").items() if a != blocked_account)
    rail = services.rails.of(BatchSettlementRail)
    for channel in rail.storage.list():  # nothing served on credit the node could not collect
        assert channel_state(chain.client, channel.channel_id).total_claimed == int(channel.charged_cumulative_amount)
