"""The database handle: an engine for the configured URL, short sessions, and schema migration.

SQLite (the default, a file in the home folder) gets WAL mode and a busy timeout so that the API
threads and the prover threads can write at the same time; PostgreSQL is used as given.
The schema is created and upgraded by Alembic (``db/migrations``) when a node or a worker starts, under a lock
(PostgreSQL: an advisory lock in the migration's transaction; SQLite: an exclusive ``flock`` on a file next to the
database), so that processes started at the same instant on a fresh database wait for the first and then find the
schema current. ``proofmarket db upgrade`` runs the same migration ahead of a deployment.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Table, create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from proofmarket.core.errors import DatabaseError, UsageError
from proofmarket.db.tables import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x70726F6F666D6B74  # pg_advisory_xact_lock key ("proofmkt"): one migrator per database
RECONNECT_WAIT_S = 30.0  # a server this process reached before is waited for this long (a restart, a failover)

log = logging.getLogger(__name__)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time; a writer that finds it taken sleeps in growing steps (up to 100 ms) even
        # when it is free again a millisecond later. This process's writers queue on a lock instead (other
        # processes on the same file still meet SQLite's own lock and its busy timeout).
        self._writer = _writer_lock(url) if self.engine.dialect.name == "sqlite" else nullcontext()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A transaction that reads what it is about to change: SQLite takes its writer lock at the start (``BEGIN
        IMMEDIATE``; the driver's own transactions start at the first write, after the reads they depend on), other
        backends lock the rows read ``FOR UPDATE``."""
        with self._writer, self._sessions.begin() as session:
            if self.engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    @contextmanager
    def snapshot_session(self) -> Iterator[Session]:
        """A read-only transaction that sees one snapshot of the database across all its statements (PostgreSQL:
        REPEATABLE READ; SQLite: one read transaction in WAL mode), so that a check reading several tables is not
        fooled by writers committing between its reads."""
        with self._sessions() as session:
            if self.engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN")
            else:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                yield session
            finally:
                session.rollback()

    def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema to ``revision`` (the newest Alembic revision by default).

        Holds the database's migration lock throughout: a concurrent migrator waits, then finds nothing to do."""
        config = _alembic_config()
        try:
            with self._file_lock(), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # released when this transaction (the migration) ends
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(f"cannot migrate the database at {self.safe_url}: {exc}") from exc

    def prepare(self, migrate: str = "auto") -> None:
        """At a node's or worker's start: upgrade the schema (``auto``), or (``off``: an operator upgrades it in
        the upgrade window, before the new code starts) refuse a schema that is not this code's newest."""
        if migrate != "off":
            self.migrate()
            return
        revision, head = self.revision(), self.head()
        if revision != head:
            raise DatabaseError(f"the database at {self.safe_url} is at revision {revision or 'none (empty)'}, this "
                                f"code needs {head}: run 'proofmarket db upgrade' (PROOFMARKET_MIGRATE=off: nodes "
                                "and workers do not migrate at start)", revision=revision, head=head)

    def downgrade(self, revision: str) -> None:
        """Downgrade the schema to ``revision`` (an older one; ``base``: no schema), under the migration lock."""
        config = _alembic_config()
        try:
            with self._file_lock(), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                config.attributes["connection"] = conn
                command.downgrade(config, revision)
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(f"cannot downgrade the database at {self.safe_url}: {exc}") from exc

    @staticmethod
    def history() -> list[dict[str, str | None]]:
        """Every revision this code knows, oldest first: its id, the one before it and its title."""
        scripts = ScriptDirectory.from_config(_alembic_config())
        found = [{"revision": s.revision, "down_revision": s.down_revision if isinstance(s.down_revision, str | None)
                  else ",".join(s.down_revision), "title": (s.doc or "").strip().splitlines()[0] if s.doc else ""}
                 for s in scripts.walk_revisions()]
        return list(reversed(found))

    def ensure_tables(self, tables: Sequence[Table]) -> None:
        """Create those of ``tables`` that do not exist yet: the tables a payment rail brings that no migration of
        this package holds (a rail added from outside). Tables on the node's ``Base`` are the migrations' (the
        built-in rails' among them): left to them, so a node of built-in rails asks the schema nothing here."""
        tables = [t for t in tables if t.metadata is not Base.metadata]
        if not tables:
            return
        try:
            with self.engine.connect() as conn:
                present = set(inspect(conn).get_table_names())
            missing = [t for t in tables if t.name not in present]
            if not missing:
                return
            with self._file_lock(), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # one node creates them; the others find them made
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                for metadata in {id(t.metadata): t.metadata for t in missing}.values():
                    metadata.create_all(conn, tables=[t for t in missing if t.metadata is metadata], checkfirst=True)
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(f"cannot create a rail's tables in the database at {self.safe_url}: {exc}") from exc

    def revision(self) -> str | None:
        """The schema's Alembic revision (None: an empty database)."""
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot read the schema revision of {self.safe_url}: {exc}") from exc

    @staticmethod
    def head() -> str:
        """The newest revision this code knows (what ``migrate`` upgrades to)."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        assert head is not None
        return head

    def _file_lock(self) -> AbstractContextManager[object]:
        """SQLite: an exclusive lock on ``<database>.migrate.lock`` (PostgreSQL and in-memory SQLite: none)."""
        parsed = make_url(self.url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return nullcontext()
        return _flock(Path(f"{parsed.database}.migrate.lock"))

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_lock(url: str) -> threading.RLock:
    """One lock per SQLite file in this process (every ``Database`` on the same file shares it)."""
    database = make_url(url).database or ":memory:"
    key = database if database == ":memory:" else str(Path(database).resolve())
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.RLock())


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (waits for the holder; released on close, even if this process dies)."""
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise UsageError(f"PROOFMARKET_DATABASE_URL is not a database URL: {url!r}") from exc
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "do_connect", _ConnectWaiter(RECONNECT_WAIT_S))
        return engine
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool
    else:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def lost_connection(exc: BaseException) -> bool:
    """The database went away under a statement: its connection was cut (SQLAlchemy invalidated it; the driver says
    the connection is closed or broken). Not the fault of what the statement was doing, which is left to be done
    again. Any other database error (a missing table, SQLite's lock timeout, a server that stayed away longer than
    ``RECONNECT_WAIT_S``) is not."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class _ConnectWaiter:
    """Opens a server's connections; when one fails to open on a server this engine has reached before (it is
    restarting: "shutting down", "starting up", its socket gone), tries again for up to ``wait_s`` seconds instead
    of failing the statement that asked for it. Nothing was sent on a connection that never opened, so any
    transaction may wait for it. A server never reached (a wrong host, password or name) fails at once."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.reached = False

    def __call__(self, dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        deadline, pause = time.monotonic() + self.wait_s, 0.05
        while True:
            try:
                conn = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                left = deadline - time.monotonic()
                if not self.reached or left <= 0:
                    raise
                if pause == 0.05:
                    log.warning("the database does not accept connections (%s); trying again for up to %.0f s",
                                (str(exc).strip().splitlines() or [type(exc).__name__])[-1], self.wait_s)
                time.sleep(min(pause, left))
                pause = min(pause * 2, 1.0)
            else:
                self.reached = True
                return conn


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, no fsync per commit
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
