"""``proofmarket db``: the node's database schema. ``upgrade`` runs the migrations (as a node or worker does at start,
under the same lock, unless PROOFMARKET_MIGRATE=off), ``current`` shows the schema's revision against the newest this
code knows, ``history`` lists the revisions, ``downgrade REV`` goes back to one (the rollback of an upgrade).

Hook: ``db_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.core.settings import Settings

if TYPE_CHECKING:
    from proofmarket.db.engine import Database

db_app = typer.Typer(help="The node's database: upgrade, show, list or roll back the schema's revisions.",
                     no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="database URL (default: PROOFMARKET_DATABASE_URL, else the SQLite file in HOME)")]
HomeOpt = Annotated[Path | None, typer.Option("--home", envvar="PROOFMARKET_HOME", help="data folder")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


def _database(url: str | None, home: Path | None) -> Database:
    from proofmarket.db.engine import Database

    if url:
        return Database(url)
    return Database((Settings(home=home) if home is not None else Settings()).db_url)


@db_app.command("upgrade")
def upgrade_cmd(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Create or upgrade the schema to the newest revision (safe while nodes and workers run or start)."""
    try:
        db = _database(url, home)
        try:
            before = db.revision()
            db.migrate()
            after = db.revision()
        finally:
            db.close()
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "database": db.safe_url, "from": before, "revision": after})
    elif before == after:
        out.print(f"{db.safe_url}: at {after} (already current)")
    else:
        out.print(f"{db.safe_url}: upgraded from {before or 'an empty database'} to {after}")


@db_app.command("current")
def current_cmd(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Show the schema's revision and whether it is the newest (exit 1 when an upgrade is due)."""
    try:
        db = _database(url, home)
        try:
            revision = db.revision()
        finally:
            db.close()
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    head = db.head()
    if as_json:
        emit_json({"ok": True, "database": db.safe_url, "revision": revision, "head": head,
                   "current": revision == head})
    else:
        state = "current" if revision == head else f"behind: run 'proofmarket db upgrade' to reach {head}"
        out.print(f"{db.safe_url}: {revision or 'empty (no schema)'} ({state})")
    if revision != head:
        raise typer.Exit(1)


@db_app.command("history")
def history_cmd(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the schema revisions this code knows, oldest first, marking the database's own."""
    try:
        db = _database(url, home)
        try:
            revision = db.revision()
        finally:
            db.close()
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    rows = db.history()
    if as_json:
        emit_json({"ok": True, "database": db.safe_url, "revision": revision, "history": rows})
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
    try:
        from proofmarket.db.engine import Database

        known = {row["revision"] for row in Database.history()} | {"base"}
        if revision not in known:
            raise UsageError(f"{revision} is not a revision this code knows: see 'proofmarket db history'")
        if not yes:
            raise UsageError("a downgrade drops what the later revisions added, data included: confirm with --yes")
        db = _database(url, home)
        try:
            before = db.revision()
            db.downgrade(revision)
            after = db.revision()
        finally:
            db.close()
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "database": db.safe_url, "from": before, "revision": after})
    else:
        out.print(f"{db.safe_url}: downgraded from {before} to {after or 'no schema'}")
