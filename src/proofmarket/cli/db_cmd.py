"""``proofmarket db``: the node's database schema. ``upgrade`` runs the migrations (as a node or worker does at start,
under the same lock, unless PROOFMARKET_MIGRATE=off), ``current`` shows the schema's revision against the newest this
code knows, ``history`` lists the revisions, ``downgrade REV`` goes back to one (the rollback of an upgrade).

Hook: ``db_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from proofmarket.cli.common import HomeOpt, JsonOpt
from proofmarket.cli.groups import group
from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError

if TYPE_CHECKING:
    from proofmarket.db.engine import Database

T = TypeVar("T")

db_app = group(help="The node's database: upgrade, show, list or roll back the schema's revisions.",
                     no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="database URL (default: PROOFMARKET_DATABASE_URL, else the SQLite file in HOME)")]


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


def _on_database(url: str | None, home: Path | None, as_json: bool, step: Callable[[Database], T]) -> tuple[str, T]:
    """``step`` on the database (opened, then closed); its URL without the password, and what ``step`` answered. A
    refusal is printed by ``fail`` with its exit code."""
    try:
        db = _database(url, home)
        try:
            return db.safe_url, step(db)
        finally:
            db.close()
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc


def _moved(db: Database, move: Callable[[], None]) -> tuple[str | None, str | None]:
    """The schema's revision before and after ``move``."""
    before = db.revision()
    move()
    return before, db.revision()


def _database(url: str | None, home: Path | None) -> Database:
    from proofmarket.db.engine import Database

    if url:
        return Database(url)
    from proofmarket.core.settings import Settings
    return Database((Settings(home=home) if home is not None else Settings()).db_url)


@db_app.command("upgrade")
def upgrade_cmd(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Create or upgrade the schema to the newest revision (safe while nodes and workers run or start)."""
    safe_url, (before, after) = _on_database(url, home, as_json, lambda db: _moved(db, db.migrate))
    if as_json:
        emit_json({"ok": True, "database": safe_url, "from": before, "revision": after})
    elif before == after:
        out.print(f"{safe_url}: at {after} (already current)")
    else:
        out.print(f"{safe_url}: upgraded from {before or 'an empty database'} to {after}")


@db_app.command("current")
def current_cmd(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Show the schema's revision and whether it is the newest (exit 1 when an upgrade is due)."""
    from proofmarket.db.engine import Database

    safe_url, revision = _on_database(url, home, as_json, lambda db: db.revision())
    head = Database.head()
    if as_json:
        emit_json({"ok": True, "database": safe_url, "revision": revision, "head": head,
                   "current": revision == head})
    else:
        state = "current" if revision == head else f"behind: run 'proofmarket db upgrade' to reach {head}"
        out.print(f"{safe_url}: {revision or 'empty (no schema)'} ({state})")
    if revision != head:
        raise typer.Exit(1)


@db_app.command("history")
def history_cmd(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the schema revisions this code knows, oldest first, marking the database's own."""
    from proofmarket.db.engine import Database

    safe_url, revision = _on_database(url, home, as_json, lambda db: db.revision())
    rows = Database.history()
    if as_json:
        emit_json({"ok": True, "database": safe_url, "revision": revision, "history": rows})
        return
    for row in rows:
        mark = "  <- this database" if row["revision"] == revision else ""
        out.print(f"{row['revision']}  {row['title']}{mark}")


@db_app.command("downgrade")
def downgrade_cmd(revision: Annotated[str, typer.Argument(help="the revision to go back to ('db history'), or "
                                                               "'base' for no schema")],
                  yes: Annotated[bool, typer.Option("--yes", help="confirm: a downgrade drops the tables and "
                                                                  "columns the later revisions added, with their data")]
                  = False,
                  url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Downgrade the schema to REVISION (roll back an upgrade: stop every node and worker of the newer code first,
    and take a backup: 'proofmarket backup')."""
    from proofmarket.db.engine import Database

    if revision not in {row["revision"] for row in Database.history()} | {"base"}:
        raise fail(UsageError(f"{revision} is not a revision this code knows: see 'proofmarket db history'"), as_json)
    if not yes:
        raise fail(UsageError("a downgrade drops what the later revisions added, data included: confirm with --yes"),
                   as_json)
    safe_url, (before, after) = _on_database(url, home, as_json,
                                             lambda db: _moved(db, lambda: db.downgrade(revision)))
    if as_json:
        emit_json({"ok": True, "database": safe_url, "from": before, "revision": after})
    else:
        out.print(f"{safe_url}: downgraded from {before} to {after or 'no schema'}")
