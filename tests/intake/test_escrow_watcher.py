"""The escrow watcher on anvil with real proofs: request on chain, input over HTTP, fulfilled on chain."""

from __future__ import annotations

import threading
import time

import pytest
from escrow_helpers import (
    PRICE_UNITS,
    SALT,
    AppFactory,
    EscrowEnv,
    expected_splits,
    mlp_input,
    other_input,
    wait_status,
)
from fastapi.testclient import TestClient

from proofmarket.chain import advance_time, dev_account, mine
from proofmarket.chain.types import RequestStatus
from proofmarket.core.address_signature import sign_headers
from proofmarket.core.errors import UnknownRequest
from proofmarket.db import Database, EscrowRepo, EscrowStatus, ModelRepo
from proofmarket.intake.escrow import EscrowService
from proofmarket.intake.rails import EscrowRail
from proofmarket.onchain import Market
from proofmarket.payments.tickets import ProofOutcome, Settlement, Ticket
from proofmarket.systems.registry import PROVEN_SYSTEM

pytestmark = [pytest.mark.slow, pytest.mark.chain]


def balances(market: Market) -> dict[str, int]:
    a = market.accounts
    parties = {"consumer": a.consumer.address, "owner": a.owner.address, "prover": a.prover.address,
               "escrow": market.market.address}
    return {name: market.usdc.balance_of(address) for name, address in parties.items()}


def test_request_on_chain_then_input_is_fulfilled_with_the_exact_splits(env: EscrowEnv, make_app: AppFactory,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settled_on: list[str] = []
    settle = EscrowRail.settle

    def settle_on_a_thread(rail: EscrowRail, ticket: Ticket, proof: ProofOutcome) -> Settlement:
        settled_on.append(threading.current_thread().name)
        return settle(rail, ticket, proof)

    monkeypatch.setattr(EscrowRail, "settle", settle_on_a_thread)
    env.market.stake_court_node()  # what the node's court watcher stakes at start: not part of this request
    before = balances(env.market)
    accounts = [env.market.accounts.owner.address, env.market.accounts.prover.address]
    owed_before = [env.market.market.owed(a) for a in accounts]
    receipt = env.market.request(env.public, mlp_input())
    app = make_app()
    with TestClient(app) as client:
        seen = wait_status(client, receipt.request_id, ("seen",), timeout_s=10)
        assert seen["commitment"] == receipt.commitment and seen["model_id"] == env.public
        posted = client.post(f"/v1/requests/{receipt.request_id}/input", json={"input": mlp_input()})
        assert posted.status_code == 202, posted.text
        assert posted.json()["status"] in ("input_received", "proving", "fulfilled")
        done = wait_status(client, receipt.request_id, ("fulfilled", "failed"))
        scraped = client.get("/metrics").text
        # the bundle is the consumer's: the answer to its input carried the token that opens it
        proof_url = f"/v1/proofs/{done['bundle_cid']}"
        mine = client.get(proof_url, headers={"X-Job-Token": posted.json()["access_token"]})
        anyone = client.get(proof_url)
    assert done["status"] == "fulfilled", done
    registry = app.state.services.registry
    assert registry.get_sample_value("proofmarket_escrow_requests_total", {"outcome": "fulfilled"}) == 1.0
    assert registry.get_sample_value("proofmarket_escrow_fulfil_seconds_count") == 1.0
    assert "proofmarket_escrow_open_requests" in scraped
    # one path: the escrow request was a call of the escrow rail, proved by the node's engine and fulfilled by its
    # call settler (the call's settlement is the fulfil), counted like any other
    jobs = [j for j in app.state.services.calls.repo.recent(50) if j.bundle_cid == done["bundle_cid"]]
    assert jobs and jobs[0].kind == "prove" and jobs[0].status == "settled" and jobs[0].rail == "escrow"
    assert jobs[0].idempotency_key.startswith("escrow:") and jobs[0].payment_nonce == jobs[0].idempotency_key
    assert [t.split("_")[0] for t in settled_on] == ["proofmarket-settle"]  # fulfilled by the call settler
    payment = jobs[0].settlement["payment"]
    assert (payment["scheme"], payment["transaction"], payment["request_id"], payment["amount"]) == (
        "escrow", done["fulfil_tx"], receipt.request_id, str(PRICE_UNITS))
    assert registry.get_sample_value("proofmarket_jobs_finished_total", {"kind": "prove", "status": "settled"}) >= 1
    assert registry.get_sample_value("proofmarket_calls_total", {"system": PROVEN_SYSTEM, "rail": "escrow",
                                                                 "model": env.public, "status": "settled"}) == 1
    s = done["settlement"]
    owner, prover, fee = expected_splits()
    assert (s["status"], s["owner_amount"], s["prover_amount"], s["platform_fee"]) == ("FULFILLED", owner, prover, fee)
    assert done["fulfil_tx"] == s["tx"]["hash"] and done["bundle_cid"]
    assert posted.json()["access_token"] and done["access_token"] is None  # only the input's answer carries it
    assert mine.status_code == 200 and mine.json()["model"]["id"] == env.public
    assert anyone.status_code == 404
    assert env.market.market.get_request(receipt.request_id).status is RequestStatus.FULFILLED
    # the fulfilment credits the shares on chain; one withdrawMany pays them to the owner and the prover
    delta = {k: v - before[k] for k, v in balances(env.market).items()}
    assert delta == {"consumer": -PRICE_UNITS, "owner": 0, "prover": 0, "escrow": PRICE_UNITS}
    assert [env.market.market.owed(a) - b for a, b in zip(accounts, owed_before, strict=True)] == [owner, prover]
    paid = env.market.withdraw(accounts).paid
    assert paid == {accounts[0]: owed_before[0] + owner, accounts[1]: owed_before[1] + prover}
    delta = {k: v - before[k] for k, v in balances(env.market).items()}
    assert delta == {"consumer": -PRICE_UNITS, "owner": paid[accounts[0]], "prover": paid[accounts[1]],
                     "escrow": PRICE_UNITS - paid[accounts[0]] - paid[accounts[1]]}
    with TestClient(app) as client:  # the node books the withdrawal from the market's event: the owner reads it
        owner_key = env.market.accounts.owner
        signer = client.get("/.well-known/ai-service.json").json()["address_signature"]["node"]
        deadline = time.monotonic() + 30
        while True:
            book = client.get("/v1/earnings", params={"address": accounts[0]},
                              headers=sign_headers(owner_key, signer, "earnings")).json()["book"]
            if book["withdrawn"] != "0" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert book["withdrawable"] == "0" and int(book["withdrawn"]) >= paid[accounts[0]], book
    # the book: the fulfilment's credits, as the chain's RequestFulfilled has them; nothing differs
    money = app.state.services.money
    market_address = env.market.market.address.lower()  # the market's whole history is booked: this request's
    fulfil = money.book.transfer(f"escrow:{env.market.client.chain_id}:{market_address}:{receipt.request_id}")
    assert fulfil is not None and fulfil.kind == "fulfil" and fulfil.model_id == env.public
    assert fulfil.tx_hash == done["fulfil_tx"] and fulfil.payer == env.market.accounts.consumer.address.lower()
    legs = dict(money.book.postings([fulfil.id])[fulfil.id])
    market = env.market.market.address.lower()  # credited to withdraw, not paid: the owner and the prover pull it
    assert legs[f"withdrawable:{market}:{accounts[0].lower()}"] == owner
    assert legs[f"withdrawable:{market}:{accounts[1].lower()}"] == prover
    from proofmarket.payments.reconcile import reconcile

    checked = reconcile(money.book, env.market.client, env.market.deployment.usdc, "0x" + "00" * 20)
    assert checked.ok, checked.differences
    from proofmarket.db.book import Transfer

    money.book.post(Transfer.move("escrow:a-second-claim", "fulfil", "escrow", "wallet:0xc0", "wallet:0x0e", owner + 1,
                                  tx_hash=done["fulfil_tx"], memo={"request_id": receipt.request_id}))
    differs = reconcile(money.book, env.market.client, env.market.deployment.usdc, "0x" + "00" * 20)
    assert [d for d in differs.differences if "escrow:a-second-claim" in d]  # named, with both amounts


def test_hashed_input_needs_the_right_salt(env: EscrowEnv, make_app: AppFactory) -> None:
    receipt = env.market.request(env.hashed, mlp_input(), salt=SALT)
    with TestClient(make_app()) as client:
        url = f"/v1/requests/{receipt.request_id}/input"
        for body in ({"input": mlp_input()}, {"input": mlp_input(), "salt": [s ^ 1 for s in SALT]}):
            wrong = client.post(url, json=body)
            assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "input_mismatch", wrong.text
        assert client.get(f"/v1/requests/{receipt.request_id}").json()["status"] == "seen"
        assert client.post(url, json={"input": mlp_input(), "salt": SALT}).status_code == 202
        done = wait_status(client, receipt.request_id, ("fulfilled", "failed"))
    assert done["status"] == "fulfilled" and done["settlement"]["status"] == "FULFILLED", done


def test_wrong_input_is_refused_and_the_request_stays_open(env: EscrowEnv, make_app: AppFactory) -> None:
    receipt = env.market.request(env.public, mlp_input())
    with TestClient(make_app()) as client:
        wrong = client.post(f"/v1/requests/{receipt.request_id}/input", json={"input": other_input()})
        assert wrong.status_code == 422, wrong.text
        error = wrong.json()["error"]
        assert error["code"] == "input_mismatch" and error["details"]["commitment"] == receipt.commitment
        assert client.get(f"/v1/requests/{receipt.request_id}").json()["status"] == "seen"
        malformed = client.post(f"/v1/requests/{receipt.request_id}/input", json={"input": {"input_data": [[1]]}})
        assert malformed.status_code == 422
    assert env.market.market.get_request(receipt.request_id).status is RequestStatus.OPEN


def test_unknown_request_is_404(env: EscrowEnv, make_app: AppFactory) -> None:
    with TestClient(make_app(escrow_watcher="off")) as client:
        off = client.get("/v1/requests/1")
        assert off.status_code == 404 and off.json()["error"]["code"] == "escrow_unavailable"
    with TestClient(make_app()) as client:
        missing = 10_000_000
        for response in (client.get(f"/v1/requests/{missing}"),
                         client.post(f"/v1/requests/{missing}/input", json={"input": mlp_input()})):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "unknown_request"
        assert client.get("/v1/requests/0").status_code == 422


def test_restarted_watcher_resumes_and_never_fulfils_twice(env: EscrowEnv, tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/restart.db")
    db.migrate()
    ModelRepo(db).upsert(env.public, name="mlp", price_atomic=PRICE_UNITS)
    repo = EscrowRepo(db)

    def service() -> EscrowService:
        return EscrowService(Market.open(workspace=env.ws), repo, lambda: [env.public], confirmations=0)

    first = service()
    crashed_proving = env.market.request(env.public, mlp_input())
    crashed_after_tx = env.market.request(env.public, mlp_input())
    first.run_once()  # both seen through their events, cursor saved
    cursor = repo.cursor(first.cursor_name)
    assert cursor is not None and cursor > 0
    rows = {r: first.get(r) for r in (crashed_proving.request_id, crashed_after_tx.request_id)}
    assert all(row.status == EscrowStatus.SEEN for row in rows.values())
    for request_id in rows:
        first.post_input(request_id, mlp_input())
    # the first node claims both and stops: one before proving, one after its fulfil tx was mined
    for row in rows.values():
        assert repo.claim(row.id)
    settled = env.market.submit_proof(crashed_after_tx.request_id,
                                      env.ws.prover.prove(env.public, mlp_input()).bundle)
    assert settled.valid
    fulfilled_before = env.market.market.get_prover(env.market.accounts.prover.address).fulfilled

    second = service()
    assert second.events.next_block == cursor  # resumes from the saved block
    second.recover()
    after_tx = repo.get(second.chain_id, second.address, crashed_after_tx.request_id)
    assert after_tx is not None and after_tx.status == EscrowStatus.FULFILLED and after_tx.settlement
    assert after_tx.settlement["recovered"] is True
    assert repo.get(second.chain_id, second.address, crashed_proving.request_id).status == EscrowStatus.INPUT_RECEIVED  # type: ignore[union-attr]
    second.run_once()
    proved = repo.get(second.chain_id, second.address, crashed_proving.request_id)
    assert proved is not None and proved.status == EscrowStatus.FULFILLED and proved.fulfil_tx, proved.error_message
    assert proved.inputs is None and after_tx.inputs is None  # a final request forgets the input
    # replaying every event from the deployment (at-least-once delivery) changes nothing
    third = service()
    third.events.next_block = env.market.deployment.contracts["InferenceMarket"].block
    third.run_once()
    assert third.work() == 0
    info = env.market.market.get_prover(env.market.accounts.prover.address)
    assert info.fulfilled == fulfilled_before + 1  # one more: the request left proving, none twice
    for request_id in rows:
        assert env.market.market.get_request(request_id).status is RequestStatus.FULFILLED
    db.close()


def test_watcher_waits_for_the_confirmation_depth_and_ignores_other_models(env: EscrowEnv, tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/depth.db")
    db.migrate()
    repo = EscrowRepo(db)
    market = Market.open(workspace=env.ws)
    watcher = EscrowService(market, repo, lambda: [env.public], confirmations=2)
    watcher.run_once()  # catch up with everything before this test
    served = env.market.request(env.public, mlp_input())
    for _ in range(2):
        watcher.run_once()
        assert repo.get(watcher.chain_id, watcher.address, served.request_id) is None  # not deep enough yet
        mine(market.client, 1)
    watcher.run_once()
    row = repo.get(watcher.chain_id, watcher.address, served.request_id)
    assert row is not None and row.status == EscrowStatus.SEEN and row.request_tx == served.tx.tx_hash
    other = env.market.request(env.hashed, mlp_input(), salt=SALT)  # a model this watcher does not serve
    mine(market.client, 3)
    watcher.run_once()
    assert repo.get(watcher.chain_id, watcher.address, other.request_id) is None
    assert repo.cursor(watcher.cursor_name) == market.client.block_number() - 1
    db.close()


def test_a_request_without_input_expires_and_refuses_late_input(env: EscrowEnv, make_app: AppFactory) -> None:
    receipt = env.market.request(env.public, mlp_input(), ttl_s=60)
    snapshot = env.market.client.rpc("evm_snapshot", [])
    try:
        app = make_app()
        with TestClient(app) as client:
            assert client.get(f"/v1/requests/{receipt.request_id}").json()["status"] == "seen"
            advance_time(env.market.client, 120)
            expired = wait_status(client, receipt.request_id, ("failed",), timeout_s=10)
            assert expired["error"]["code"] == "expired"
            failures = app.state.services.registry.get_sample_value("proofmarket_escrow_failures_total",
                                                                    {"code": "expired"})
            assert failures == 1.0
            late = client.post(f"/v1/requests/{receipt.request_id}/input", json={"input": mlp_input()})
            assert late.status_code == 409 and late.json()["error"]["code"] == "request_closed"
    finally:
        env.market.client.rpc("evm_revert", [snapshot])


def test_the_watcher_never_proves_for_a_squatters_listing_of_a_served_model(env: EscrowEnv, tmp_path: object) -> None:
    """A squatter lists the served model's CID under its own id (any verifier, any price): consumers who
    escrow on it are not served by this node (its ids are namespaced by its owner), so nothing is claimed,
    proved or slashed for it."""
    db = Database(f"sqlite:///{tmp_path}/squat.db")
    db.migrate()
    repo = EscrowRepo(db)
    market = Market.open(workspace=env.ws)
    watcher = EscrowService(market, repo, lambda: [env.public], confirmations=0)
    watcher.run_once()
    squatter = dev_account(6, market.client.chain_id)
    squatting = env.market.with_accounts(owner=squatter)
    squatting.register_model(env.public, "3")  # same CID, the squatter's own (namespaced) id
    assert squatting.onchain_id(env.public) != env.market.onchain_id(env.public)
    stake = market.market.get_prover(market.accounts.prover.address).stake
    squatted = env.market.request(env.public, mlp_input(), owner=squatter.address)

    watcher.run_once()

    assert repo.get(watcher.chain_id, watcher.address, squatted.request_id) is None
    with pytest.raises(UnknownRequest):
        watcher.get(squatted.request_id)
    assert market.market.get_request(squatted.request_id).status is RequestStatus.OPEN  # never claimed
    assert market.market.get_prover(market.accounts.prover.address).stake == stake
    db.close()


def test_every_on_chain_outcome_waits_for_the_confirmations(env: EscrowEnv, tmp_path: object,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A fulfilment found on chain at restart and a rejection by the verifier are final only once as deep as any
    answer (a reorg may still undo them): confirming first, then fulfilled, or failed as rejected."""
    from proofmarket.systems.ezkl.bundle import ProofBundle

    db = Database(f"sqlite:///{tmp_path}/outcomes.db")
    db.migrate()
    ModelRepo(db).upsert(env.public, name="mlp", price_atomic=PRICE_UNITS)
    repo = EscrowRepo(db)
    market = Market.open(workspace=env.ws)
    watcher = EscrowService(market, repo, lambda: [env.public], confirmations=2)
    watcher.run_once()  # catch up with everything before this test

    # found at restart: fulfilled on chain while the node was away, after its claim
    found = env.market.request(env.public, mlp_input())
    mine(market.client, 2)
    watcher.run_once()
    watcher.post_input(found.request_id, mlp_input())
    row = repo.get(watcher.chain_id, watcher.address, found.request_id)
    assert row is not None and repo.claim(row.id)
    assert env.market.submit_proof(found.request_id, env.ws.prover.prove(env.public, mlp_input()).bundle).valid
    watcher.recover()
    assert repo.get(watcher.chain_id, watcher.address, found.request_id).status == EscrowStatus.CONFIRMING  # type: ignore[union-attr]
    mine(market.client, 2)
    watcher.run_once()
    assert repo.get(watcher.chain_id, watcher.address, found.request_id).status == EscrowStatus.FULFILLED  # type: ignore[union-attr]

    # rejected by the verifier: a tampered proof (flipped byte), refunded and slashed on chain
    real = market.submit_proof

    def tampered(request_id: int, bundle: ProofBundle) -> object:
        proof = bytearray(bytes.fromhex(bundle.proof.hex[2:]))
        proof[-100] ^= 0x01
        return real(request_id, bundle.model_copy(update={"proof": bundle.proof.model_copy(
            update={"hex": "0x" + proof.hex()})}))

    monkeypatch.setattr(market, "submit_proof", tampered)
    bad = env.market.request(env.public, other_input())
    mine(market.client, 2)
    watcher.run_once()
    watcher.post_input(bad.request_id, other_input())
    watcher.run_once()  # proves, submits: the verifier says no
    assert env.market.market.get_request(bad.request_id).status is RequestStatus.REJECTED
    row = repo.get(watcher.chain_id, watcher.address, bad.request_id)
    assert row is not None and row.status == EscrowStatus.CONFIRMING and row.settlement["rejected"]
    mine(market.client, 2)
    watcher.run_once()
    row = repo.get(watcher.chain_id, watcher.address, bad.request_id)
    assert row is not None and (row.status, row.error_code) == (EscrowStatus.FAILED, "proof_rejected")
    env.market.stake_prover()  # the rejection slashed the shared prover: back to the minimum for later tests
    db.close()


def test_a_consumer_contracts_request_is_answered_into_its_callback_within_the_nodes_gas_limit(
        env: EscrowEnv, make_app: AppFactory) -> None:
    """A dApp contract's escrow request, its input posted over HTTP: the node proves it and the verified outputs land
    in the contract's callback; a callback over the node's gas limit (PROOFMARKET_CALLBACK_MAX_GAS, 500,000 by
    default), or whose tip does not cover its gas (PROOFMARKET_CALLBACK_TIP_PER_MGAS, 0.02 USDC a million gas by
    default: 0.008 USDC for 400,000), is not claimed, and says why."""
    from market_helpers import consumer_contract, request_with_callback

    m = env.market
    consumers = [consumer_contract(m, "TestConsumer", 0, funds=10 * 10**6) for _ in range(3)]
    ids = [request_with_callback(m, consumer, env.public, mlp_input(), gas=gas, tip=tip)
           for consumer, gas, tip in zip(consumers, (150_000, 600_000, 400_000), (10_000, 10_000, 7_999),
                                         strict=True)]
    with TestClient(make_app()) as client:
        for rid in ids:
            wait_status(client, rid, ("seen",), timeout_s=10)
            assert client.post(f"/v1/requests/{rid}/input", json={"input": mlp_input()}).status_code == 202
        done = [wait_status(client, rid, ("fulfilled", "failed")) for rid in ids]
    assert done[0]["status"] == "fulfilled", done[0]
    assert consumers[0].functions.received().call() == 1
    outputs = [int(v, 16) for v in done[0]["settlement"]["outputs"]]  # the settlement's RequestFulfilled outputs
    assert consumers[0].functions.lastOutputs().call() == outputs
    assert done[1]["status"] == "failed" and done[1]["error"]["code"] == "callback_gas_over_limit", done[1]
    assert m.market.get_request(ids[1]).status is RequestStatus.OPEN  # not claimed: the consumer refunds it later
    assert consumers[1].functions.received().call() == 0
    assert done[2]["status"] == "failed" and done[2]["error"]["code"] == "callback_tip_too_low", done[2]
    assert "0.008 USDC" in done[2]["error"]["message"] and m.market.get_request(ids[2]).status is RequestStatus.OPEN
