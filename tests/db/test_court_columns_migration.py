"""Migration 0016: a court request's state moves from its settlement's JSON to two columns (``court_status``,
``court_window_end``), the court's records (validation, a delivered result) stay in the JSON; readers see the same
``settlement.court`` as before; a downgrade puts the state back in the JSON."""

from __future__ import annotations

import db_backends
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from proofmarket.db import CourtState, Database, EscrowRepo, EscrowStatus
from proofmarket.db.tables import Base, JsonDoc, utcnow
from proofmarket.payments import tables as rail_tables  # noqa: F401 (the rails' tables are in the schema)

ROWS_0015 = sa.table("escrow_requests", *(sa.column(c, sa.String) for c in (
    "market", "model_id", "status", "commitment", "consumer")), sa.column("id", sa.Integer),
    sa.column("chain_id", sa.BigInteger), sa.column("request_id", sa.BigInteger), sa.column("amount", sa.String),
    sa.column("deadline", sa.BigInteger), sa.column("settlement", JsonDoc), sa.column("attempts", sa.Integer),
    sa.column("created_at", sa.DateTime), sa.column("updated_at", sa.DateTime))
empty_db_url, pg_url = db_backends.empty_db_url, db_backends.pg_url  # a new database on each backend
COURT = "0x" + "c" * 40
VALIDATION = {"tx": "0x" + "1" * 64, "score": 100}


def _row(row_id: int, settlement: dict[str, object] | None) -> dict[str, object]:
    now = utcnow().replace(tzinfo=None)
    return {"id": row_id, "chain_id": 31337, "market": COURT, "request_id": row_id, "model_id": "m",
            "status": "fulfilled", "commitment": "0x" + "0" * 64, "consumer": "0x" + "a" * 40, "amount": "5",
            "deadline": 0, "settlement": settlement, "attempts": 1, "created_at": now, "updated_at": now}


def test_court_state_moves_to_columns_and_back(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        db.migrate("0015")
        with db.engine.begin() as conn:
            conn.execute(sa.insert(ROWS_0015), [
                _row(1, {"tx_hash": "0xt", "court": {"status": "paid", "window_end": 1234, "validation": VALIDATION}}),
                _row(2, {"tx_hash": "0xu", "court": {"status": "committed", "window_end": 99}}),
                _row(3, {"tx_hash": "0xv"}),  # an escrow request: no court state
                _row(4, None)])
        db.migrate()
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        repo = EscrowRepo(db)
        paid, committed, escrow, empty = (repo.get(31337, COURT, i) for i in (1, 2, 3, 4))
        assert paid is not None and (paid.court_status, paid.court_window_end) == ("paid", 1234)
        assert paid.settlement == {"tx_hash": "0xt", "court": {"validation": VALIDATION}}  # the records stay
        assert (paid.public_settlement() or {})["court"] == {"status": "paid", "window_end": 1234,
                                                             "validation": VALIDATION}
        assert committed is not None and committed.settlement == {"tx_hash": "0xu"}
        assert (committed.court_status, committed.court_window_end) == ("committed", 99)
        assert escrow is not None and escrow.court_status is None and escrow.public_settlement() == {"tx_hash": "0xv"}
        assert empty is not None and empty.court_status is None and empty.public_settlement() is None

        assert repo.court_moved(committed.id, CourtState("challenged", 150), {"tx_hash": "0xu"})
        moved = repo.get(31337, COURT, 2)
        assert moved is not None and (moved.court_status, moved.court_window_end) == ("challenged", 150)
        assert moved.status == EscrowStatus.FULFILLED

        db.downgrade("0015")
        with db.engine.connect() as conn:
            back = {r.id: r.settlement for r in conn.execute(sa.select(ROWS_0015.c.id, ROWS_0015.c.settlement))}
            assert "court_status" not in {c["name"] for c in sa.inspect(conn).get_columns("escrow_requests")}
        assert back[1] == {"tx_hash": "0xt", "court": {"status": "paid", "window_end": 1234, "validation": VALIDATION}}
        assert back[2] == {"tx_hash": "0xu", "court": {"status": "challenged", "window_end": 150}}
        assert back[3] == {"tx_hash": "0xv"} and back[4] is None
    finally:
        db.close()
