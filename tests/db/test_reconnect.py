"""A PostgreSQL restart is waited for, not failed: a connection that cannot open on a server this process has
reached before is tried again (bounded); one that never reached its server fails at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from pg_server import fresh_database, postgres_server, start, stop
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from proofmarket.db import Database, lost_connection
from proofmarket.db import engine as engine_module


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        if url is None:
            pytest.skip("no PostgreSQL here (initdb/pg_ctl and psycopg)")
        if "/postgres?" not in url:
            pytest.skip("a server of our own is stopped and started (TEST_POSTGRES_URL is someone else's)")
        yield url


def _one(db: Database) -> int:
    with db.session() as s:
        return int(s.execute(text("SELECT 1")).scalar_one())


def test_a_statement_during_a_restart_waits_for_the_server(server: str) -> None:
    db = Database(fresh_database(server))
    assert _one(db) == 1  # reached: its pooled connection dies with the server
    stop(server)
    back = threading.Timer(1.5, start, args=[server])
    back.start()
    try:
        began = time.monotonic()
        assert _one(db) == 1  # opened once the server is back, not failed while it was down
        assert time.monotonic() - began >= 1.0  # it really waited (the server was down when it asked)
    finally:
        back.join()
        db.engine.dispose()


def test_the_wait_is_bounded(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "RECONNECT_WAIT_S", 1.0)
    db = Database(fresh_database(server))
    assert _one(db) == 1
    stop(server)
    try:
        began = time.monotonic()
        with pytest.raises(OperationalError):
            _one(db)
        assert 0.9 <= time.monotonic() - began < 10
    finally:
        start(server)
        db.engine.dispose()


def test_a_server_never_reached_fails_at_once(tmp_path: object) -> None:
    db = Database(f"postgresql+psycopg://postgres@/postgres?host={tmp_path}&port=1")  # no server on that socket
    began = time.monotonic()
    with pytest.raises(OperationalError):
        _one(db)
    assert time.monotonic() - began < engine_module.RECONNECT_WAIT_S / 3


def test_a_connection_cut_under_a_transaction_is_lost_and_a_bad_statement_is_not(server: str, tmp_path: object
                                                                                 ) -> None:
    """What the call runner leaves for the queue's recovery (``lost_connection``) is a connection the server cut,
    as PostgreSQL reports it; a statement's own error is the call's, on either backend."""
    db = Database(fresh_database(server))
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(DBAPIError) as cut, db.session() as s:
            pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            s.execute(text("SELECT 1"))
        assert lost_connection(cut.value)
        with pytest.raises(DBAPIError) as bad, db.session() as s:
            s.execute(text("SELECT * FROM nowhere"))
        assert not lost_connection(bad.value)
    finally:
        admin.dispose()
        db.engine.dispose()
    lite = Database(f"sqlite:///{tmp_path}/lite.db")
    with pytest.raises(OperationalError) as missing, lite.session() as s:  # sqlite3 says OperationalError here
        s.execute(text("SELECT * FROM nowhere"))
    assert not lost_connection(missing.value)
