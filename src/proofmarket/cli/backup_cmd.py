"""``proofmarket backup DEST`` and ``proofmarket restore SRC``: a node's home in one checked archive
(``node/backup.py`` says what is in it and what is not).

Hook: ``backup_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proofmarket.cli.common import HomeOpt, JsonOpt
from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)


def backup_cmd(
    dest: Annotated[Path, typer.Argument(help="the archive to write (a new .tar.gz file)")],
    with_srs: Annotated[bool, typer.Option("--with-srs", help="keep the SRS cache too (fetched again and checked "
                                                              "by its hash otherwise)")] = False,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Back up this home: an online snapshot of the SQLite database, the artifact store, keys, access key and
    deployment records, with every file's sha256 (a PostgreSQL database: pg_dump, see docs/deploy.md)."""
    from proofmarket.core.settings import Settings
    from proofmarket.node.backup import backup

    try:
        report = backup(Settings(home=home) if home else Settings(), dest, with_srs=with_srs)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "path": str(report.path), "files": report.files, "bytes": report.bytes,
                   "database": report.database, "schema_revision": report.revision})
        return
    out.print(f"backed up {report.files} files ({report.bytes:,} bytes) to {report.path}; database: {report.database}")


def restore_cmd(
    source: Annotated[Path, typer.Argument(help="an archive written by 'proofmarket backup'")],
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Restore a backup into a new, empty home (--home): every file is checked against the backup's manifest and
    every artifact against its CID; then start the node on that home. What the node paid after the backup is not
    paid again: it pays nothing until 'proofmarket ledger replay' books the transfers 'ledger check' names."""
    from proofmarket.core.settings import Settings
    from proofmarket.node.backup import restore

    try:
        report = restore(Settings(home=home) if home else Settings(), source)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "files": report.files, "database": report.database,
                   "schema_revision": report.revision})
        return
    out.print(f"restored {report.files} files from {source}; database: {report.database}")
    out.print("start the node, then run 'proofmarket ledger check': what it paid after this backup is held, not "
              "paid again, until 'proofmarket ledger replay' books it")
