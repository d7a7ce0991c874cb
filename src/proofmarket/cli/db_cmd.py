"""``proofmarket db``: the node's database schema. ``upgrade`` runs the migrations (as a node or worker does at start,
under the same lock), ``current`` shows the schema's revision against the newest this code knows.

Hook: ``db_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError
from proofmarket.core.settings import Settings
from proofmarket.db.engine import Database

db_app = typer.Typer(help="The node's database: run the schema migrations, show the schema's revision.",
                     no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="database URL (default: PROOFMARKET_DATABASE_URL, else the SQLite file in HOME)")]
HomeOpt = Annotated[Path | None, typer.Option("--home", envvar="PROOFMARKET_HOME", help="data folder")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


def _database(url: str | None, home: Path | None) -> Database:
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
    head = Database.head()
    if as_json:
        emit_json({"ok": True, "database": db.safe_url, "revision": revision, "head": head,
                   "current": revision == head})
    else:
        state = "current" if revision == head else f"behind: run 'proofmarket db upgrade' to reach {head}"
        out.print(f"{db.safe_url}: {revision or 'empty (no schema)'} ({state})")
    if revision != head:
        raise typer.Exit(1)
