"""Escrow for an attested causal LM on anvil: the consumer commits to its generate request on the
AttestationCourt, the node's court watcher generates, signs and commits it (paid only after the challenge
window: see test_court_network); an attested request on the InferenceMarket is refused (use_court); a
commitment for another request reverts; a listing with another verifier is refused before any work."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from escrow_helpers import PRICE, PRICE_UNITS, EscrowEnv, node_settings, wait_status
from eth_account import Account
from fastapi.testclient import TestClient

from proofmarket.api import create_app
from proofmarket.chain import advance_time
from proofmarket.chain.types import RequestStatus
from proofmarket.core.errors import ContractReverted, InputError, RegistryMismatch
from proofmarket.systems.attested import instances

pytestmark = [pytest.mark.slow, pytest.mark.chain]
REQUEST = {"prompt": "the market", "max_tokens": 24}


@pytest.fixture(scope="module")
def lm_id(env: EscrowEnv, tmp_path_factory: pytest.TempPathFactory) -> str:
    from proofmarket.systems.attested.tiny import build_tiny_lm

    # its own weights (seed): another module on this devnet (test_escrow_reorg) registers the seed-0 tiny LM, and a
    # model registered before says "unchanged", whatever order the modules run in
    folder = build_tiny_lm(tmp_path_factory.mktemp("escrow-lm") / "tiny-llama", seed=11)
    model_id, _ = env.ws.compile_attested(folder, max_tokens_cap=64)
    registration = env.market.register_model(model_id, PRICE, 7_000)
    assert registration.action == "registered" and registration.verifier is not None
    assert env.market.register_model(model_id, PRICE, 7_000).action == "unchanged"
    return model_id


@pytest.fixture
def node(env: EscrowEnv, lm_id: str, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(node_settings(env.home, env.rpc_url, tmp_path / "node.db"), workspace=env.ws)
    app.state.services.catalog.register(lm_id, price_atomic=50_000)
    with TestClient(app) as client:
        yield client
    app.state.services.close()


def _balances(env: EscrowEnv) -> dict[str, int]:
    a = env.market.accounts
    return {n: env.market.usdc.balance_of(x.address) for n, x in
            (("consumer", a.consumer), ("owner", a.owner), ("prover", a.prover))}


def _wait_court(client: TestClient, request_id: int, statuses: tuple[str, ...],
                timeout_s: float = 60.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = client.get(f"/v1/court/{request_id}").json()
        if body.get("status") in statuses:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_an_escrowed_generation_waits_for_its_window_on_the_court(env: EscrowEnv, lm_id: str, node: TestClient,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    services = node.app.state.services  # type: ignore[attr-defined]
    threads: list[str] = []  # where the node's attested system generates: the engine's prover threads
    generate = services.attested.run
    monkeypatch.setattr(services.attested, "run", lambda *a, **k: threads.append(
        threading.current_thread().name) or generate(*a, **k))
    sent: list[tuple[str, str, bool]] = []  # the court's transactions: (function, thread, under a rail's method)
    court = node.app.state.court.court  # type: ignore[attr-defined]
    for name in ("commit", "commit_batch", "finalize", "resolve", "publish"):
        monkeypatch.setattr(court, name, _recorded(sent, name, getattr(court, name)))
    before = _balances(env)
    receipt = env.market.request(lm_id, REQUEST)
    assert receipt.contract == "AttestationCourt" and receipt.node == env.market.accounts.prover.address
    assert receipt.commitment == instances.input_commitment(REQUEST)
    _wait_court(node, receipt.request_id, ("seen",), timeout_s=10)
    wrong = node.post(f"/v1/court/{receipt.request_id}/input", json={"input": {**REQUEST, "max_tokens": 25}})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "input_mismatch"
    posted = node.post(f"/v1/court/{receipt.request_id}/input", json={"input": REQUEST})
    assert posted.status_code == 202, posted.text
    done = _wait_court(node, receipt.request_id, ("fulfilled", "failed"))
    assert done["status"] == "fulfilled", done
    assert done["settlement"]["court"]["status"] == "committed"
    bundle = node.get(f"/v1/court/{receipt.request_id}/bundle",
                      headers={"X-Job-Token": posted.json()["access_token"]}).json()
    assert bundle["mode"] == "attested" and len(bundle["output"]["tokens"]) == 24
    assert env.ws.verify(bundle, reexecute=True).reexecuted
    after = _balances(env)
    assert before["consumer"] - after["consumer"] == PRICE_UNITS
    assert after["owner"] == before["owner"]  # nothing is paid before the challenge window closed
    assert env.market.court.status(receipt.request_id) == "committed"
    # the generation is a call of the court rail like any other, listed with its system and rail: settling (held,
    # nothing shown) while the court's window is open, not counted as stuck
    calls = services.calls.repo.recent(10, rail="court")
    [call] = [c for c in calls if ((c.payment or {}).get("doc") or {}).get("request_id") == receipt.request_id]
    assert call.input == instances.escrow_request(REQUEST)
    assert [(f, t.startswith("proofmarket-settle"), r) for f, t, r in sent] == [("commit", True, True)], sent
    assert threads and all(t.startswith("proofmarket-prover-") for t in threads), threads
    assert (call.system, call.status, call.bundle_cid) == ("proofmarket-attested-toploc-v1", "settling",
                                                           bundle_cid_of(node, receipt.request_id))
    assert "proofmarket_settling_jobs 0.0" in node.get("/metrics").text
    # the window closes: the watcher finalizes, the court pays, and the call settler settles the call
    advance_time(env.market.client, env.market.court.params().window + 1)
    assert _wait_court(node, receipt.request_id, ("fulfilled",), timeout_s=60)  # still the row's status
    deadline = time.monotonic() + 60
    while (settled := services.calls.get(call.id)).status != "settled":
        assert time.monotonic() < deadline, settled.status
        services.settler.follow()  # what its next pass does
        time.sleep(0.2)
    assert env.market.court.status(receipt.request_id) == "paid"
    assert [(f, r) for f, _, r in sent] == [("commit", True), ("finalize", True)], sent  # both the court rail's
    payment = settled.settlement["payment"]
    assert (payment["scheme"], payment["request_id"], payment["amount"], payment["court"]) == (
        "court", receipt.request_id, str(PRICE_UNITS), "paid")
    assert f'model="{lm_id}",rail="court",status="settled"' in node.get("/metrics").text
    assert _balances(env)["owner"] > after["owner"]  # paid by the court


def _recorded(sent: list[tuple[str, str, bool]], name: str, send: Any) -> Any:
    """``send`` that records its name, its thread and whether a rail's settle or follow (intake/rails.py) called it."""
    def recorded(*args: Any, **kwargs: Any) -> Any:
        in_rail = any(f.function in ("settle", "follow") and f.filename.endswith("intake/rails.py")
                      for f in inspect.stack())
        sent.append((name, threading.current_thread().name, in_rail))
        return send(*args, **kwargs)
    return recorded


def bundle_cid_of(node: TestClient, request_id: int) -> str:
    cid: str = node.get(f"/v1/court/{request_id}").json()["bundle_cid"]
    return cid


def test_an_attested_request_on_the_inference_market_is_sent_to_the_court(env: EscrowEnv, lm_id: str,
                                                                          node: TestClient) -> None:
    key = env.market.onchain_id(lm_id)
    commitment = bytes.fromhex(instances.input_commitment(REQUEST)[2:])
    submitted, _ = env.market._escrow(key, commitment, env.market.client.timestamp() + 600, "approve")
    wait_status(node, submitted.request_id, ("seen",), timeout_s=10)
    refused = node.post(f"/v1/requests/{submitted.request_id}/input", json={"input": REQUEST})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "use_court"
    assert env.market.market.get_request(submitted.request_id).status is RequestStatus.OPEN  # refundable


def test_another_request_cannot_be_answered_with_this_attestation(env: EscrowEnv, lm_id: str) -> None:
    receipt = env.market.request(lm_id, REQUEST)
    other = {**REQUEST, "prompt": "another prompt"}
    bundle, _ = env.market.generate_attested(lm_id, other)
    env.market.stake_court_node()
    with pytest.raises(ContractReverted, match="another input|NotTheRequest"):
        env.market.court.commit(receipt.request_id, instances.instances_of(bundle, other),
                                env.market.accounts.prover)
    forged = Account.create()  # a node that was not named cannot answer it either
    assert env.market.court.get_request(receipt.request_id).node == env.market.accounts.prover.address
    assert forged.address != env.market.accounts.prover.address


@pytest.mark.parametrize("doc", [{"prompt": "x", "temperature": 0.7}, {"prompt": ""}, {"max_tokens": 3}])
def test_bad_escrow_requests_are_refused_before_any_transaction(env: EscrowEnv, lm_id: str, doc: Any) -> None:
    count = env.market.client.w3.eth.get_transaction_count(env.market.accounts.consumer.address)
    with pytest.raises(InputError):
        env.market.request(lm_id, doc)
    assert env.market.client.w3.eth.get_transaction_count(env.market.accounts.consumer.address) == count


def test_a_listing_with_another_attester_contract_is_not_this_model(env: EscrowEnv, lm_id: str) -> None:
    from proofmarket.chain.artifacts import load_artifact

    entry = env.market.registry.get_model(env.market.onchain_id(lm_id))
    env.market.check_entry(lm_id, env.market.onchain_id(lm_id))  # the honest listing passes
    root = b"\x11" * 32  # another weights root in the verifier: refused
    other, _ = env.market.client.deploy(load_artifact("AttestationVerifier"), env.market.accounts.owner,
                                        env.market.accounts.prover.address, root)
    from dataclasses import replace

    from proofmarket.onchain.registry_check import check_entry

    forged = replace(entry, spec=replace(entry.spec, verifier=other))
    with pytest.raises(RegistryMismatch, match="verifier"):
        check_entry(env.market, lm_id, forged)


def test_a_consumer_lists_its_requests_with_a_signature(env: EscrowEnv, lm_id: str, node: TestClient) -> None:
    from proofmarket.core.address_signature import sign_headers

    consumer = env.market.accounts.consumer
    receipt = env.market.request(lm_id, {**REQUEST, "prompt": "listed"})
    _wait_court(node, receipt.request_id, ("seen",), timeout_s=10)
    here = node.get("/.well-known/ai-service.json").json()["address_signature"]["node"]
    headers = sign_headers(consumer, here)
    page = node.get(f"/v1/requests?consumer={consumer.address}&limit=100", headers=headers).json()
    court = env.market.deployment.court.lower()
    found = [i for i in page["items"] if i["request_id"] == receipt.request_id and i["market"] == court]
    assert found and found[0]["status"] == "seen" and found[0]["access_token"]
    assert node.get(f"/v1/requests?consumer={consumer.address}").status_code == 401


def test_the_court_watcher_stakes_at_start_up_and_again_only_when_its_stake_fell(
        env: EscrowEnv, lm_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staking is a start-up step of the court watcher, not a transaction before each commitment: a node whose
    stake fell below the minimum (here it unstaked; in production, a slash) stakes again when the court refuses
    its commitment (StakeTooLow), and commits."""
    from proofmarket.chain.devkeys import dev_account
    from proofmarket.db import Database, EscrowRepo
    from proofmarket.intake.court import CourtService

    node = dev_account(6, env.market.client.chain_id)  # a node that never staked on this court
    market = env.market.with_accounts(prover=node)
    court = market.court
    assert court is not None and court.stake_of(node.address, validator=False) == 0
    minimum = court.params().node_min_stake
    staked: list[int] = []  # what each staking call added
    stake = market.stake_court_node

    def counted(amount: int | None = None) -> tuple[int, Any]:
        added, tx = stake(amount)
        staked.append(added)
        return added, tx

    monkeypatch.setattr(market, "stake_court_node", counted)
    db = Database(f"sqlite:///{tmp_path}/court.db")
    db.migrate()
    watcher = CourtService(market, EscrowRepo(db), lambda: [lm_id], confirmations=0)

    def answer(prompt: str) -> dict[str, Any]:
        doc = {**REQUEST, "prompt": prompt}
        receipt = env.market.request_attested(lm_id, doc, node=node.address)
        watcher.run_once()  # sees the request
        watcher.post_input(receipt.request_id, doc)
        watcher.run_once()  # generates and commits
        row = watcher.repo.get(watcher.chain_id, watcher.address, receipt.request_id)
        assert row is not None and row.status == "fulfilled", row
        assert court.status(receipt.request_id) == "committed"
        return dict(row.settlement or {})

    watcher.start_up()
    assert staked == [minimum] and court.stake_of(node.address, validator=False) == minimum
    court.unstake(minimum, node, validator=False)  # its stake falls below the minimum (no open commitment yet)
    assert court.stake_of(node.address, validator=False) == 0

    answer("first")
    assert staked == [minimum, minimum]  # refused for its stake, staked again, committed
    assert court.stake_of(node.address, validator=False) == minimum
    answer("second")
    assert staked == [minimum, minimum]  # no staking transaction on the way to a commitment
    db.close()
