"""The job table and its repository: guarded transitions, unique keys, the restart rule, the migration."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from jobs_helpers import new_job, ticket_json

from proofmarket.core.errors import DuplicateJob
from proofmarket.db import INTERRUPTED, CallRepo, CallStatus, Database, ModelRepo
from proofmarket.db.tables import Base, CallRow
from proofmarket.payments import tables as rail_tables  # noqa: F401 (the rails' tables are in the schema)


def test_the_migration_builds_exactly_the_tables(db: Database) -> None:
    db.migrate()  # twice: a no-op
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []


def test_transitions_are_guarded(db: Database) -> None:
    jobs = CallRepo(db)
    job = jobs.create(new_job())
    assert job.status == CallStatus.QUEUED and job.attempts == 0 and job.created_at.tzinfo == UTC
    assert not jobs.proved(job.id, bundle_cid="cid", result={}, final=True)  # not running yet
    started = jobs.start(job.id)
    assert started is not None and started.status == CallStatus.RUNNING and started.attempts == 1
    assert jobs.start(job.id) is None  # a second worker does not get it
    assert not jobs.settled(job.id, {})
    assert jobs.proved(job.id, bundle_cid="cid", result={"output": [[1.0]]}, final=True)
    done = jobs.get(job.id)
    assert done is not None and done.is_final and done.result_visible and done.finished_at is not None
    assert not jobs.failed(job.id, "x", "too late")  # a final job stays as it is


def test_a_paid_job_is_final_only_once_settled(db: Database) -> None:
    jobs = CallRepo(db)
    job = jobs.create(new_job(nonce="n1", payment=ticket_json("n1")))
    jobs.start(job.id)
    moved = jobs.proved(job.id, bundle_cid="cid", result={}, final=False)  # the row as the move left it
    proved = jobs.get(job.id)
    assert proved is not None and proved.awaits_settlement and not proved.is_final and not proved.result_visible
    assert moved is not None and (moved.status, moved.bundle_cid) == (proved.status, "cid") and moved.awaits_settlement
    done = jobs.settled(job.id, {"payment": {"tx": "0x1"}})
    assert done is not None and done.is_final and done.settlement == {"payment": {"tx": "0x1"}}
    assert jobs.settled(job.id, {"payment": {"tx": "0x2"}}) is None  # at most once
    settled = jobs.get(job.id)
    assert settled is not None and settled.is_final and settled.settlement == {"payment": {"tx": "0x1"}}


def test_idempotency_keys_and_payment_nonces_are_unique(db: Database) -> None:
    jobs = CallRepo(db)
    jobs.create(new_job(1, key="k", nonce="n"))
    with pytest.raises(DuplicateJob):
        jobs.create(new_job(2, key="k"))
    with pytest.raises(DuplicateJob):
        jobs.create(new_job(3, nonce="n"))
    jobs.create(new_job(4))
    jobs.create(new_job(5))  # NULL keys and nonces never collide
    assert jobs.counts() == {"queued": 3}


def test_restart_rule(db: Database) -> None:
    # Given jobs in every state
    jobs = CallRepo(db)
    ids = {name: jobs.create(new_job(i, nonce=f"n{i}" if paid else None,
                                     payment=ticket_json(f"n{i}") if paid else None)).id
           for i, (name, paid) in enumerate([("queued", False), ("running", True), ("free_proved", False),
                                             ("paid_proved", True), ("settled", True), ("queued_paid", True)])}
    for name in ("running", "free_proved", "paid_proved", "settled"):
        jobs.start(ids[name])
    jobs.proved(ids["free_proved"], bundle_cid="c", result={}, final=True)
    jobs.proved(ids["paid_proved"], bundle_cid="c", result={}, final=False)
    jobs.proved(ids["settled"], bundle_cid="c", result={}, final=False)
    jobs.settled(ids["settled"], {})

    # When the node restarts
    recovery = jobs.recover()

    # Then running fails as interrupted; queued and proved-awaiting-settlement go back, oldest first
    assert recovery.interrupted == [ids["running"]]
    interrupted = jobs.get(ids["running"])
    assert interrupted is not None and interrupted.status == CallStatus.FAILED and interrupted.error_code == INTERRUPTED
    assert recovery.requeued == [("prove", ids["queued"]), ("prove", ids["paid_proved"]), ("prove", ids["queued_paid"])]
    assert jobs.counts() == {"queued": 2, "failed": 1, "proved": 2, "settled": 1}


def test_models_upsert_keeps_exact_prices(db: Database) -> None:
    models = ModelRepo(db)
    models.upsert("m1", name="one", price_atomic=2**96 - 1)
    models.upsert("m1", name="one", price_atomic=7, owner="0xowner")
    [row] = models.list()
    assert (row.price_atomic, row.owner, row.created_at.tzinfo) == (7, "0xowner", UTC)
    assert models.get("nope") is None


def test_recent_rows_and_open_counts_on_each_backend(db: Database) -> None:
    from proofmarket.db import EscrowRepo, EscrowStatus, SeenRequest

    jobs = CallRepo(db)
    ids = [jobs.create(new_job(n)).id for n in range(5)]
    recent = jobs.recent(3)
    assert {j.id for j in recent} == set(ids[2:])  # the newest, bounded
    assert [j.created_at for j in recent] == sorted((j.created_at for j in recent), reverse=True)

    escrow, market = EscrowRepo(db), "0x" + "ab" * 20
    for request_id in (1, 2, 3):
        escrow.seen(SeenRequest(chain_id=1, market=market, request_id=request_id, model_id="m",
                                commitment="0x" + "00" * 32, consumer="0x" + "cd" * 20, amount=1, deadline=2**40))
    row = escrow.get(1, market, 2)
    assert row is not None and escrow.failed(row.id, "expired", "late")
    open_ = (EscrowStatus.SEEN, EscrowStatus.INPUT_RECEIVED, EscrowStatus.PROVING)
    assert escrow.count_with_status(1, market, *open_) == 2
    assert escrow.count_with_status(1, market.upper().replace("0X", "0x"), *open_) == 2  # addresses any case
    assert escrow.count_with_status(2, market, *open_) == 0
    assert [r.request_id for r in escrow.recent(1, market, 2)] == [3, 2]


def test_held_by_sums_a_payer_s_unsettled_paid_jobs(db: Database) -> None:
    jobs = CallRepo(db)
    queued = jobs.create(new_job(1, nonce="n1", payment=ticket_json("n1")))
    running = jobs.create(new_job(2, nonce="n2", payment=ticket_json("n2")))
    jobs.start(running.id)
    settling = jobs.create(new_job(3, nonce="n3", payment=ticket_json("n3")))
    jobs.start(settling.id)
    jobs.proved(settling.id, bundle_cid="cid", result={}, final=False)
    assert jobs.settling(settling.id, {"pending": {"tx": "0x01"}}) and jobs.settling_ids() == [settling.id]
    done = jobs.create(new_job(4, nonce="n4", payment=ticket_json("n4")))
    jobs.failed(done.id, "x", "failed")
    jobs.create(new_job(5))  # free

    assert jobs.held_by("0xPAYER") == 3 * 10_000
    assert jobs.held_by("0xpayer", besides="n1") == 2 * 10_000
    assert jobs.held_by("0xsomeone-else") == 0
    assert jobs.settled(settling.id, {"payment": {}}) and jobs.held_by("0xpayer") == 2 * 10_000
    assert queued.status == CallStatus.QUEUED


def test_held_by_counts_a_payers_calls_from_before_the_payer_column(db: Database) -> None:
    """A call stored before jobs.payer existed (migration 0004) has none: its hold still counts for its payer (the
    payer column only narrows the rows read), never for another."""
    import sqlalchemy as sa

    jobs = CallRepo(db)
    jobs.create(new_job(1, nonce="n1", payment=ticket_json("n1")))
    old = jobs.create(new_job(2, nonce="n2", payment=ticket_json("n2")))
    with db.session() as s:
        s.execute(sa.update(CallRow).where(CallRow.id == old.id).values(payer=None))
    assert jobs.held_by("0xpayer") == 2 * 10_000
    assert jobs.held_by("0xsomeone-else") == 0


def test_a_settling_job_is_not_final_and_shows_nothing(db: Database) -> None:
    jobs = CallRepo(db)
    job = jobs.create(new_job(nonce="n1", payment=ticket_json("n1")))
    jobs.start(job.id)
    jobs.proved(job.id, bundle_cid="cid", result={"output": [[1.0]]}, final=False)
    jobs.settling(job.id, {"pending": {"tx": None}})
    row = jobs.get(job.id)
    assert row is not None and row.status == CallStatus.SETTLING
    assert not row.is_final and not row.result_visible and not row.awaits_settlement
    assert jobs.recover().requeued == []  # followed on chain, not re-sent
    assert jobs.failed(job.id, "payment_settlement_failed", "expired unused")


def test_the_settling_age_leaves_out_the_rails_that_settle_late_by_design(db: Database) -> None:
    jobs = CallRepo(db)
    for n, rail in enumerate(("court", "x402")):
        new = dataclasses.replace(new_job(n, nonce=f"n{n}", payment=ticket_json(f"n{n}")), rail=rail)
        job = jobs.create(new)
        jobs.start(job.id)
        jobs.proved(job.id, bundle_cid="cid", result={"output": [[1.0]]}, final=False)
        jobs.settling(job.id, {"pending": {"tx": None}})
        if rail == "court":
            time.sleep(0.05)  # the court's call is the older one
    assert jobs.settling_age()[0] == 2
    count, oldest = jobs.settling_age(besides=("court",))  # a court's call waits for its challenge window
    assert count == 1 and oldest < jobs.settling_age()[1]


def test_a_lease_has_one_holder_until_it_expires(db: Database) -> None:
    import time

    from proofmarket.db import LeaseRepo

    leases = LeaseRepo(db)
    assert leases.acquire("escrow:1:0xmarket", "node-a", 30)
    assert not leases.acquire("escrow:1:0xmarket", "node-b", 30)  # node a follows the market
    assert leases.acquire("escrow:1:0xmarket", "node-a", 0.2)  # renewed
    assert leases.holder("escrow:1:0xmarket") == "node-a"
    time.sleep(0.4)  # node a stopped renewing
    assert leases.holder("escrow:1:0xmarket") is None
    assert leases.acquire("escrow:1:0xmarket", "node-b", 30)
    assert not leases.acquire("escrow:1:0xmarket", "node-a", 30)
    leases.release("escrow:1:0xmarket", "node-a")  # not its lease: nothing happens
    assert leases.holder("escrow:1:0xmarket") == "node-b"
    leases.release("escrow:1:0xmarket", "node-b")
    assert leases.acquire("escrow:1:0xmarket", "node-a", 30)


def test_one_payers_calls_at_once_take_turns_in_the_process_before_the_database(db: Database) -> None:
    """32 calls of one payer at once: one thread at a time asks the database for the funds lease (each asks once),
    none waits out its 10 s as busy, and another payer's lock is never held up by them."""
    import threading

    from proofmarket.core.errors import PaymentPayerBusy
    from proofmarket.db import LeaseRepo
    from proofmarket.db import leases as lease_module

    leases = LeaseRepo(db)
    asked, guard = [0], threading.Lock()
    acquire = leases.acquire

    def counted(*args: object, **kwargs: object) -> bool:
        with guard:
            asked[0] += 1
        return acquire(*args, **kwargs)  # type: ignore[arg-type]

    leases.acquire = counted  # type: ignore[method-assign]
    inside, most, held, busy = [0], [0], [], []
    slow = threading.Event()

    def call(i: int) -> None:
        try:
            with leases.funds("0xPAYER"):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                slow.wait(0.005)
                with guard:
                    inside[0] -= 1
                held.append(i)
        except PaymentPayerBusy:
            busy.append(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    with leases.funds("0xOTHER"):  # another payer's turn does not wait for this one's queue
        pass
    for t in threads:
        t.join(60)
    assert busy == [] and sorted(held) == list(range(32)) and most[0] == 1
    assert asked[0] == 32 + 1  # each call asked the database once (and the other payer once): nobody polled it
    assert not lease_module._TURNS._names  # no name kept once nobody holds or waits for it


def test_the_proof_cache_is_a_bounded_lru(db: Database) -> None:
    from proofmarket.db import ProofCacheRepo

    cache = ProofCacheRepo(db, max_entries=2)
    cache.put("k1", "m", "cid1")
    cache.put("k2", "m", "cid2")
    assert cache.get("k1") == "cid1"  # k1 used last: k2 is the least recently used
    cache.put("k3", "m", "cid3")
    assert cache.count() == 2 and cache.get("k2") is None and cache.get("k3") == "cid3"
    cache.put("k3", "m", "other")  # a second put of the same key keeps the first proof
    assert cache.get("k3") == "cid3"
    cache.forget("k3")
    assert cache.get("k3") is None


def test_a_running_compile_shows_its_current_step_until_it_is_done(db: Database) -> None:
    from proofmarket.api.views import job_public

    jobs = CallRepo(db)
    job = jobs.create(new_job(41))
    jobs.progress(job.id, "not running yet: not recorded")
    assert job_public(jobs.get(job.id)).progress is None  # type: ignore[arg-type]
    jobs.start(job.id)
    jobs.progress(job.id, "searching circuit settings (about 9 s)")
    shown = job_public(jobs.get(job.id))  # type: ignore[arg-type]
    assert shown.progress == "searching circuit settings (about 9 s)" and shown.result is None
    assert jobs.proved(job.id, bundle_cid=None, result={"model_id": "m", "logrows": 9}, final=True)
    done = job_public(jobs.get(job.id))  # type: ignore[arg-type]
    assert done.progress is None and done.result is not None


def test_the_compile_childs_steps_reach_the_caller_before_its_answer() -> None:
    import multiprocessing as mp
    import threading

    from proofmarket.calls.compile_task import _wait

    parent, child = mp.Pipe(duplex=False)
    for message in (("progress", "checking the ONNX model"), ("progress", "timing b256x2-s7-c1"),
                    ("ok", {"model_id": "m"})):
        child.send(message)

    class Alive:
        def is_alive(self) -> bool:
            return True

    steps: list[str] = []
    assert _wait(parent, Alive(), 5.0, threading.Event(), 0, steps.append) == ("ok", {"model_id": "m"})
    assert steps == ["checking the ONNX model", "timing b256x2-s7-c1"]
