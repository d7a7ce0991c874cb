"""Alembic environment: runs on the connection ``Database.migrate`` hands over (or on sqlalchemy.url).

New revision (from the repository root):
    .venv/bin/alembic -x url=sqlite:///tmp/x.db -c /dev/null revision --autogenerate -m "..." \
        (or use alembic.command.revision with script_location = src/proofmarket/db/migrations)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from proofmarket.db.tables import Base
from proofmarket.payments import tables  # noqa: F401 (the built-in rails' tables are part of the schema)

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    with create_engine(url).connect() as conn:
        _run(conn)


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
