"""The operator's payout run waits for another node's settler pass (a flaky CI test: ``POST /v1/payouts/run``
answered ``ran: false`` while another settler of the same database held the lease for its scheduled pass, so the
payouts the operator asked for did not run). The settler holds the lease only for a pass: the run waits it out."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from proofmarket.db import Database, LeaseRepo
from proofmarket.payments.settler import Settler


class Payouts:
    def __init__(self) -> None:
        self.runs = 0

    def run(self) -> Any:
        self.runs += 1
        return type("Report", (), {"to_json": lambda _: {"paid": {}, "confirmed": ["payout:x"]}})()


def test_the_operators_payout_run_waits_for_another_settlers_pass(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'node.db'}")
    db.migrate()
    leases, payouts = LeaseRepo(db), Payouts()
    other, mine = Settler(None, None, lease=leases), Settler(None, payouts, lease=leases)  # type: ignore[arg-type]
    assert leases.acquire(mine.lease_name, other.holder, ttl_s=60)  # another node's pass in progress
    assert mine.pay_now(wait_s=0) is None  # not waiting: nothing ran
    threading.Thread(target=lambda: (time.sleep(0.3), leases.release(mine.lease_name, other.holder))).start()
    done = mine.pay_now(wait_s=10)
    assert done is not None and done["payouts"]["confirmed"] == ["payout:x"] and payouts.runs == 1
    assert leases.holder(mine.lease_name) is None  # released after the pass


def test_a_scheduled_pass_never_takes_the_operators_payout_run(tmp_path: Path) -> None:
    """The operator's "pay now" was a flag shared with the background loop: a scheduled pass that started just then
    took it (and paid), and the operator's own pass then ran without payouts (``KeyError: 'payouts'`` in the money
    book test). The request belongs to the operator's pass only."""
    payouts = Payouts()
    settler = Settler(None, payouts, payout_every_s=3600)  # type: ignore[arg-type]
    settler._asked.pay = True  # the operator's thread asked: as pay_now does before its pass
    scheduled: list[Any] = []
    background = threading.Thread(target=lambda: scheduled.append(settler.tick()))
    background.start()
    background.join()
    assert "payouts" not in scheduled[0] and payouts.runs == 0  # not due on schedule, and not the operator's pass
    assert settler.tick()["payouts"]["confirmed"] == ["payout:x"] and payouts.runs == 1
    assert settler.pay_now(wait_s=0) is not None and payouts.runs == 2
