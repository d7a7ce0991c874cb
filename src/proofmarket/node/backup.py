"""Backups of a node's home for the embedded defaults: ``proofmarket backup DEST`` and ``proofmarket restore SRC``.

What must be saved, in one archive (``.tar.gz``) with a manifest of every file's sha256:

- the SQLite database, as an online snapshot (SQLite's backup API: consistent while the node runs);
- the artifact store (models, proving keys, verifiers, bundles: content addressed, each checked on restore),
  ``models.json``;
- ``access.key`` (job access tokens), ``keys/`` (encrypted keystores), deployment records (``deployments/``,
  ``devnet.json``, ``chain/``), the validator's state, the devnet's state.

Left out: the SRS cache (``srs/``: fetched again and checked by its hash; ``--with-srs`` keeps it), scratch
(``jobs/``, ``client-cache/``). A PostgreSQL database is not in the archive: back it up with ``pg_dump`` (the
archive says so, docs/deploy.md gives the commands). ``restore`` refuses a home that is not empty, an archive whose
files do not match its manifest (or that names a path outside itself), and a schema newer than this code's.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from proofmarket import __version__
from proofmarket.core.errors import UsageError
from proofmarket.core.settings import Settings
from proofmarket.db.engine import Database
from proofmarket.store import LocalStore

FORMAT = "proofmarket/backup"
MANIFEST = "backup.json"
DATABASE = "node.db"
SKIPPED = {"srs", "jobs", "client-cache"}
_SQLITE_SIDE = (".db-wal", ".db-shm", ".db-journal", ".migrate.lock")


@dataclass(frozen=True)
class BackupReport:
    path: Path
    files: int
    bytes: int
    database: str  # "sqlite snapshot" | "postgresql: not included (pg_dump)"
    revision: str | None


def backup(settings: Settings, dest: Path, *, with_srs: bool = False) -> BackupReport:
    """Write the home's archive to ``dest`` (refused when it exists)."""
    if dest.exists():
        raise UsageError(f"{dest} exists already: give a new file name for the backup")
    home = settings.home
    if not home.is_dir():
        raise UsageError(f"there is no home at {home} to back up")
    db = Database(settings.db_url)
    try:
        revision = db.revision()
    finally:
        db.close()
    files: dict[str, str] = {}
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="proofmarket-backup-") as tmp, \
            tarfile.open(dest.with_suffix(dest.suffix + ".part"), "w:gz") as archive:
        url = make_url(settings.db_url)
        sqlite_file = Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None
        if sqlite_file is not None and sqlite_file.is_file():
            snapshot = Path(tmp) / DATABASE
            _snapshot(sqlite_file, snapshot)
            files[DATABASE] = _add(archive, snapshot, DATABASE, Path(tmp))
            described = "sqlite snapshot"
        else:
            described = "postgresql: not included, back it up with pg_dump" if sqlite_file is None else "none"
        for path in sorted(home.rglob("*")):
            rel = path.relative_to(home)
            if not path.is_file() or path.is_symlink() or _skipped(rel, with_srs, sqlite_file, home):
                continue
            files[rel.as_posix()] = _add(archive, path, rel.as_posix(), Path(tmp))
        manifest = {"format": FORMAT, "version": 1, "proofmarket": __version__, "created_at": int(time.time()),
                    "schema_revision": revision, "database": described, "files": files}
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
        archive.addfile(info, io.BytesIO(data))
    dest.with_suffix(dest.suffix + ".part").rename(dest)
    dest.chmod(0o600)  # keystores and the access key are in it
    return BackupReport(dest, len(files), dest.stat().st_size, described, revision)


def restore(settings: Settings, source: Path) -> BackupReport:
    """Unpack ``source`` into the (new, empty) home of ``settings``, checking every file against the manifest, the
    store's artifacts against their CIDs and the schema against this code's."""
    home = settings.home
    if home.exists() and any(home.iterdir()):
        raise UsageError(f"{home} is not empty: restore into a new home (--home) so that nothing is overwritten")
    if not source.is_file():
        raise UsageError(f"there is no backup at {source}")
    with tempfile.TemporaryDirectory(prefix="proofmarket-restore-", dir=home.parent if home.parent.exists()
                                     else None) as tmp:
        staged = Path(tmp) / "home"
        try:
            with tarfile.open(source, "r:gz") as archive:
                archive.extractall(staged, filter="data")  # no absolute path, no '..', no links out, no devices
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UsageError(f"{source} is not a proofmarket backup ({exc})") from None
        manifest = _manifest(staged, source)
        for rel, digest in manifest["files"].items():
            if _sha256(staged / rel) != digest:
                raise UsageError(f"{source}: {rel} does not match its checksum in the backup: the archive is damaged")
        store = LocalStore(staged / "store")
        for blob in (staged / "store" / "blobs").rglob("*") if (staged / "store" / "blobs").is_dir() else []:
            if blob.is_file() and not store.verify(blob.name):
                raise UsageError(f"{source}: the stored artifact {blob.name} does not match its CID")
        revision = manifest.get("schema_revision")
        if revision is not None and revision not in {row["revision"] for row in Database.history()}:
            raise UsageError(f"{source} was taken by a newer proofmarket (schema {revision}): restore it with "
                             f"that version or newer, not {__version__}")
        (staged / MANIFEST).unlink()
        home.parent.mkdir(parents=True, exist_ok=True)
        if home.exists():
            home.rmdir()
        shutil.move(str(staged), str(home))
    return BackupReport(source, len(manifest["files"]), source.stat().st_size, str(manifest.get("database")),
                        revision)


def _manifest(staged: Path, source: Path) -> dict:  # type: ignore[type-arg]
    try:
        manifest = json.loads((staged / MANIFEST).read_text())
    except (OSError, ValueError):
        raise UsageError(f"{source} has no readable {MANIFEST}: it is not a proofmarket backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"),
                                                                                            dict):
        raise UsageError(f"{source} is not a proofmarket backup (its {MANIFEST} is not one)")
    present = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()} - {MANIFEST}
    if present != set(manifest["files"]):
        raise UsageError(f"{source}: its files are not those its manifest lists: the archive is damaged")
    return manifest


def _skipped(rel: Path, with_srs: bool, sqlite_file: Path | None, home: Path) -> bool:
    top = rel.parts[0]
    if top in SKIPPED and not (with_srs and top == "srs"):
        return True
    if sqlite_file is not None and (home / rel).resolve() == sqlite_file.resolve():
        return True  # the snapshot stands for it
    return rel.name.endswith(_SQLITE_SIDE) or rel.name.startswith(".")


def _snapshot(database: Path, out: Path) -> None:
    live, copy = sqlite3.connect(f"file:{database}?mode=ro", uri=True), sqlite3.connect(out)
    try:
        live.backup(copy)  # page by page, consistent while the node writes
    finally:
        copy.close()
        live.close()


def _add(archive: tarfile.TarFile, path: Path, name: str, tmp: Path) -> str:
    """Archive ``path`` from one read: copied aside while hashed, the copy archived. A file written during the
    backup (a live node's log, its store) is archived as it was read, with the hash of those bytes; a second read
    for the hash would not match them, and the restore would refuse the whole archive."""
    staged = tmp / ".staged"
    digest = hashlib.sha256()
    with open(path, "rb") as source, open(staged, "wb") as copy:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            copy.write(block)
    info = archive.gettarinfo(str(staged), arcname=name)
    stat = path.stat()
    info.mode, info.mtime = stat.st_mode & 0o7777, int(stat.st_mtime)
    with open(staged, "rb") as fh:
        archive.addfile(info, fh)
    staged.unlink()
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
