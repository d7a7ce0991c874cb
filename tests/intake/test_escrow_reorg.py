"""The escrow watcher across reorgs on anvil (anvil_reorg), with confirmations: a request whose event left the chain
is forgotten and recorded again from the canonical one; a fulfil whose block left the chain leaves the request open
and the node answers it again, once, and the consumer pays once."""

from __future__ import annotations

from pathlib import Path

import pytest
from escrow_helpers import PRICE_UNITS, EscrowEnv, expected_splits, mlp_input
from reorg import reorg

from proofmarket.chain import input_commitment, mine
from proofmarket.chain.types import RequestStatus
from proofmarket.core.errors import InputMismatch
from proofmarket.db import Database, EscrowRepo, EscrowStatus, ModelRepo
from proofmarket.intake.court import CourtService
from proofmarket.intake.escrow import EscrowService
from proofmarket.onchain import Market

pytestmark = [pytest.mark.slow, pytest.mark.chain]
DEPTH = 2  # the watcher's confirmations


def _watcher(env: EscrowEnv, tmp_path: Path) -> tuple[EscrowService, EscrowRepo, Database]:
    db = Database(f"sqlite:///{tmp_path}/reorg.db")
    db.migrate()
    ModelRepo(db).upsert(env.public, name="mlp", price_atomic=PRICE_UNITS)
    repo = EscrowRepo(db)
    watcher = EscrowService(Market.open(workspace=env.ws), repo, lambda: [env.public], confirmations=DEPTH)
    watcher.run_once()  # catch up with everything before this test
    return watcher, repo, db


def _balances(market: Market) -> dict[str, int]:
    a = market.accounts
    parties = {"consumer": a.consumer.address, "owner": a.owner.address, "prover": a.prover.address,
               "escrow": market.market.address}
    return {name: market.usdc.balance_of(address) for name, address in parties.items()}


def test_a_request_replaced_in_a_reorg_is_forgotten_and_recorded_from_the_canonical_event(
        env: EscrowEnv, tmp_path: Path) -> None:
    watcher, repo, db = _watcher(env, tmp_path)
    client = env.market.client
    receipt = env.market.request(env.public, mlp_input())
    mine(client, DEPTH)
    watcher.run_once()
    seen = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert seen is not None and seen.status == EscrowStatus.SEEN and seen.commitment == receipt.commitment

    # the request's block is replaced (deeper than the watcher's confirmations) by another request under its id
    other = input_commitment([9, 9, 9])
    consumer = env.market.accounts.consumer
    fn = env.market.market.contract.functions.requestInference(env.market.onchain_id(env.public), other,
                                                               receipt.deadline)
    reorg(client, client.block_number() - receipt.tx.block_number + 1, [(consumer, fn)], keep=[consumer])
    assert env.market.market.get_request(receipt.request_id).input_commitment == other
    mine(client, DEPTH)
    watcher.run_once()

    rolled = watcher.events.rolled_back_from  # just after the newest block read that stayed
    assert rolled is not None and rolled <= receipt.tx.block_number
    again = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert again is not None and again.status == EscrowStatus.SEEN and again.request_tx != seen.request_tx
    assert again.commitment == "0x" + other.hex()
    with pytest.raises(InputMismatch):  # the input of the orphaned request does not open the canonical one
        watcher.post_input(receipt.request_id, mlp_input())
    db.close()


def test_a_reorg_while_the_node_was_stopped_is_seen_when_it_starts_again(env: EscrowEnv, tmp_path: Path) -> None:
    watcher, repo, db = _watcher(env, tmp_path)
    client = env.market.client
    receipt = env.market.request(env.public, mlp_input())
    mine(client, DEPTH)
    watcher.run_once()
    seen = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert seen is not None and seen.status == EscrowStatus.SEEN
    cursor, block_hash = repo.cursor_at(watcher.cursor_name)
    assert cursor is not None and block_hash is not None  # the last block read and its hash are saved with it

    # the node stops; meanwhile the request's block is replaced by another request under its id
    other = input_commitment([7, 7, 7])
    consumer = env.market.accounts.consumer
    fn = env.market.market.contract.functions.requestInference(env.market.onchain_id(env.public), other,
                                                               receipt.deadline)
    reorg(client, client.block_number() - receipt.tx.block_number + 1, [(consumer, fn)], keep=[consumer])
    mine(client, DEPTH)
    restarted = EscrowService(Market.open(workspace=env.ws), repo, lambda: [env.public], confirmations=DEPTH)
    restarted.run_once()

    rolled = restarted.events.rolled_back_from
    assert rolled is not None and rolled <= receipt.tx.block_number
    again = repo.get(restarted.chain_id, restarted.address, receipt.request_id)
    assert again is not None and again.commitment == "0x" + other.hex() and again.request_tx != seen.request_tx
    db.close()


def test_a_fulfil_in_an_orphaned_block_is_answered_again_and_paid_once(env: EscrowEnv, tmp_path: Path) -> None:
    watcher, repo, db = _watcher(env, tmp_path)
    client, market = env.market.client, env.market
    prover = market.accounts.prover
    fulfilled_before = market.market.get_prover(prover.address).fulfilled
    before = _balances(market)
    owed_before = (market.market.owed(market.accounts.owner.address), market.market.owed(prover.address))
    receipt = market.request(env.public, mlp_input())
    mine(client, DEPTH)
    watcher.run_once()
    watcher.post_input(receipt.request_id, mlp_input())

    assert watcher.work() == 0  # proved, claimed and fulfilled: mined, not final
    row = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert row is not None and row.status == EscrowStatus.CONFIRMING and row.fulfil_tx and row.inputs
    first_tx, bundle_cid = row.fulfil_tx, row.bundle_cid
    fulfil_block = client.w3.eth.get_transaction_receipt(first_tx)["blockNumber"]  # type: ignore[arg-type]
    assert market.market.get_request(receipt.request_id).status is RequestStatus.FULFILLED
    mine(client, 1)
    watcher.run_once()
    assert repo.get(watcher.chain_id, watcher.address, receipt.request_id).status == EscrowStatus.CONFIRMING  # type: ignore[union-attr]

    # the fulfil's block leaves the chain (the claim before it stays): the request is open again
    reorg(client, client.block_number() - fulfil_block + 1, keep=[prover])
    assert market.market.get_request(receipt.request_id).status is RequestStatus.ACCEPTED
    watcher.run_once()  # open again: answered again, with the proof already made

    row = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert row is not None and row.status == EscrowStatus.CONFIRMING and row.fulfil_tx not in (None, first_tx)
    assert row.bundle_cid == bundle_cid
    assert market.market.get_request(receipt.request_id).status is RequestStatus.FULFILLED
    mine(client, DEPTH)
    watcher.run_once()

    row = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert row is not None and row.status == EscrowStatus.FULFILLED and row.inputs is None
    assert row.settlement is not None and row.settlement["tx"]["hash"] == row.fulfil_tx
    assert watcher.work() == 0 and len(repo.by_consumer(watcher.chain_id, receipt.consumer, limit=100)) >= 1
    assert market.market.get_prover(prover.address).fulfilled == fulfilled_before + 1
    owner, prover_share, fee = expected_splits()
    # credited once (paid once: the orphaned fulfilment's credit left the chain with it), then paid out
    assert (market.market.owed(market.accounts.owner.address) - owed_before[0],
            market.market.owed(prover.address) - owed_before[1]) == (owner, prover_share)
    paid = market.withdraw([market.accounts.owner.address, prover.address]).paid
    delta = {k: v - before[k] for k, v in _balances(market).items()}
    assert delta == {"consumer": -PRICE_UNITS, "owner": paid.get(market.accounts.owner.address, 0),
                     "prover": paid.get(prover.address, 0), "escrow": PRICE_UNITS - sum(paid.values())}
    assert paid == {market.accounts.owner.address: owed_before[0] + owner,
                    prover.address: owed_before[1] + prover_share}
    db.close()


@pytest.fixture(scope="module")
def lm_id(env: EscrowEnv, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny attested LM, listed (test_escrow_attested may have listed it already)."""
    from proofmarket.systems.attested.tiny import build_tiny_lm

    model_id, _ = env.ws.compile_attested(build_tiny_lm(tmp_path_factory.mktemp("reorg-lm") / "tiny-llama"),
                                          max_tokens_cap=64)
    env.market.register_model(model_id, "2.5", 7_000)
    return model_id


def test_a_court_commitment_in_an_orphaned_block_is_committed_again(env: EscrowEnv, lm_id: str,
                                                                    tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/court.db")
    db.migrate()
    repo = EscrowRepo(db)
    client, prover = env.market.client, env.market.accounts.prover
    watcher = CourtService(Market.open(workspace=env.ws), repo, lambda: [lm_id], confirmations=DEPTH)
    watcher.start_up()  # stakes the node on the court
    watcher.run_once()
    doc = {"prompt": "the reorg", "max_tokens": 8}
    consumer_before = env.market.usdc.balance_of(env.market.accounts.consumer.address)
    receipt = env.market.request(lm_id, doc)
    mine(client, DEPTH)
    watcher.run_once()
    watcher.post_input(receipt.request_id, doc)
    watcher.run_once()  # generated and committed: mined, not final

    row = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert row is not None and row.status == EscrowStatus.CONFIRMING and row.fulfil_tx, row
    first_tx = row.fulfil_tx
    assert env.market.court.status(receipt.request_id) == "committed"
    commit_block = client.w3.eth.get_transaction_receipt(first_tx)["blockNumber"]  # type: ignore[arg-type]
    reorg(client, client.block_number() - commit_block + 1, keep=[prover])
    assert env.market.court.status(receipt.request_id) == "open"

    watcher.run_once()  # open again: generated and committed again
    row = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert row is not None and row.status == EscrowStatus.CONFIRMING and row.fulfil_tx not in (None, first_tx)
    mine(client, DEPTH)
    watcher.run_once()

    row = repo.get(watcher.chain_id, watcher.address, receipt.request_id)
    assert row is not None and row.status == EscrowStatus.FULFILLED and row.inputs is None
    assert row.court_status == "committed" and (row.public_settlement() or {})["court"]["status"] == "committed"
    assert env.market.court.status(receipt.request_id) == "committed"
    consumer_after = env.market.usdc.balance_of(env.market.accounts.consumer.address)
    assert consumer_before - consumer_after == receipt.amount  # escrowed once
    db.close()
