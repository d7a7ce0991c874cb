"""Migration 0005 (jobs.system, jobs.rail): a database made at 0004 with jobs in it upgrades in place."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from jobs_helpers import new_job, ticket_json

from proofmarket.db import CallKind, CallRepo, Database, NewCall
from proofmarket.db.tables import Base, JsonDoc, utcnow
from proofmarket.payments import tables as rail_tables  # noqa: F401 (the rails' tables are in the schema)

PROVEN, ATTESTED = "ezkl-halo2-kzg-bn254", "proofmarket-attested-toploc-v1"

# the jobs table as revision 0004 left it (only the columns these rows need)
JOBS_0004 = sa.table("jobs", sa.column("id", sa.String), sa.column("kind", sa.String), sa.column("status", sa.String),
                     sa.column("input", JsonDoc), sa.column("payment", JsonDoc), sa.column("request_hash", sa.String),
                     sa.column("attempts", sa.Integer), sa.column("created_at", sa.DateTime))


def _rows() -> list[dict[str, object]]:
    base = {"status": "proved", "request_hash": "h", "attempts": 1, "created_at": utcnow().replace(tzinfo=None)}
    return [
        {**base, "id": "compile", "kind": "compile", "input": {"name": "m"}, "payment": None},
        {**base, "id": "free", "kind": "prove", "input": {"input_data": [[1]]}, "payment": None},
        {**base, "id": "paid", "kind": "prove", "input": {"input_data": [[1]]}, "payment": ticket_json("n1")},
        {**base, "id": "attested", "kind": "prove", "input": {"attested": {"prompt": "hi"}},
         "payment": ticket_json("n2")},
        {**base, "id": "attested-null", "kind": "prove", "input": {"attested": None}, "payment": None},
    ]


def test_a_0004_database_with_jobs_upgrades_in_place(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        db.migrate("0004")
        with db.engine.begin() as conn:
            assert "system" not in {c["name"] for c in sa.inspect(conn).get_columns("jobs")}
            conn.execute(sa.insert(JOBS_0004), _rows())
        db.migrate()
        with db.engine.connect() as conn:
            got = {row.id: (row.system, row.rail) for row in conn.execute(sa.text("SELECT id, system, rail FROM jobs"))}
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
            indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(conn).get_indexes("jobs")}
        assert got == {"compile": (None, "free"), "free": (PROVEN, "free"), "paid": (PROVEN, "x402"),
                       "attested": (ATTESTED, "x402"), "attested-null": (ATTESTED, "free")}
        assert indexes["ix_jobs_rail_status"] == ["rail", "status"]
        jobs = CallRepo(db)
        old = jobs.get("paid")
        assert old is not None and old.system == PROVEN and old.rail == "x402"
    finally:
        db.close()


def test_new_jobs_carry_their_system_and_rail(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        db.migrate()
        jobs = CallRepo(db)
        plain = jobs.create(new_job())
        assert plain.system is None and plain.rail is None
        court = jobs.create(NewCall(CallKind.PROVE, {"input_data": [[2]]}, "h2", model_id="m", system=ATTESTED,
                                    rail="court"))
        stored = jobs.get(court.id)
        assert stored is not None and (stored.system, stored.rail) == (ATTESTED, "court")
        assert [j.id for j in jobs.recent(rail="court")] == [court.id]
        assert [j.id for j in jobs.recent(system=ATTESTED, rail="court")] == [court.id]
        assert jobs.recent(system=PROVEN) == []
        assert {j.id for j in jobs.recent()} == {plain.id, court.id}
    finally:
        db.close()
