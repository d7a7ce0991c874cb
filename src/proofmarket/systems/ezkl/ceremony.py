"""Ceremony SRS files on this machine: fetched or imported, checked against the pinned sha256 of their logrows,
stored by content under HOME/srs/ceremony/<CID> and recorded in HOME/srs/ceremony.json (logrows -> CID), where
``SrsProvider`` finds them at compile time.

The pins are ``CEREMONY_SRS_SHA256`` of ``proofmarket.systems.ezkl.srs``: EZKL's own table of the public
perpetual-powers-of-tau files (``src/srs_sha.rs``, ``PUBLIC_SRS_SHA256_HASHES``, logrows 1-26, in
github.com/zkonduit/ezkl; its ``get_srs`` downloads ``PUBLIC_SRS_URL`` + logrows from ``src/pfsys/srs.rs``, the
URL ``ceremony_url`` builds). EZKL checks the pin on the file it writes after parsing the download; here the
downloaded bytes themselves must hash to the pin, so a file that differs from that serialization in any byte is
refused, never stored. A URL given with ``--url`` is still checked against the pin of its logrows.

Then EZKL checks the file itself, the way it checks its own downloads (``ezkl_table_check``): ``get_srs`` on a
path where the file already is downloads nothing, hashes the file there and compares it with EZKL's compiled-in
table (deleting it when it differs). It runs on a hard link of the exact bytes that are stored, which are the
bytes compile hands to EZKL; so a stored ceremony file is one EZKL itself accepted, not only one that matched a
copy of its table.

A store takes its pins as a parameter (``pins``): tests pin a file they generated; the default is the table
above and nothing else. ``table_check`` (default: EZKL's) is what else must accept a file before it is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import httpx

from proofmarket.core.errors import ArtifactCorrupt, ArtifactNotFound, UsageError
from proofmarket.store import cid_from_digest, validate_cid
from proofmarket.systems.ezkl.srs import BYTES_PER_ROW, CEREMONY_SRS_SHA256

#: logrows -> sha256 of the ceremony file for it (the inverse of ``CEREMONY_SRS_SHA256``).
CEREMONY_PINS: Mapping[int, str] = {k: h for h, k in CEREMONY_SRS_SHA256.items()}
CEREMONY_FILE = "perpetual-powers-of-tau-raw-{logrows}"
HEADER_BYTES = 4096  # a file holds 2^k G1 points twice (128 bytes a row), its k and two G2 points (260 bytes)
CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes when the server says)
TableCheck = Callable[[Path, int], None]  # (a file, its logrows): raises ArtifactCorrupt when refused


def ezkl_table_check(path: Path, logrows: int) -> None:
    """EZKL's own check of a ceremony file for ``logrows``: its ``get_srs`` on a path where the file already is
    downloads nothing, hashes that file and compares the hash with EZKL's table (``PUBLIC_SRS_SHA256_HASHES``),
    deleting the file when it differs. Run on a hard link (a copy where links are refused) in a private directory,
    so that EZKL's delete never touches ``path``. Raises ArtifactCorrupt when EZKL refuses it."""
    import ezkl  # loaded only here

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".ezkl-check-") as private:
        probe = Path(private) / f"kzg{logrows}.srs"
        try:
            os.link(path, probe)
        except OSError:
            shutil.copyfile(path, probe)

        async def check() -> None:
            await ezkl.get_srs(None, logrows=logrows, srs_path=str(probe))

        try:
            with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever the caller runs
                pool.submit(asyncio.run, check()).result()
        except Exception as exc:
            raise ArtifactCorrupt(f"EZKL's own check refused this file as the ceremony SRS for logrows {logrows} "
                                  f"({exc}); refused, nothing stored", logrows=logrows) from exc


def ceremony_url(base: str, logrows: int) -> str:
    """The URL of the ceremony file for ``logrows`` under ``base`` (``PROOFMARKET_SRS_URL``)."""
    return f"{base.rstrip('/')}/{CEREMONY_FILE.format(logrows=logrows)}"


def size_cap(logrows: int) -> int:
    """The most bytes a ceremony file for ``logrows`` may have (a download is cut off past it)."""
    return (BYTES_PER_ROW << logrows) + HEADER_BYTES


@dataclass(frozen=True)
class CeremonyEntry:
    logrows: int
    cid: str
    sha256: str
    size: int
    source: str
    path: Path

    def to_dict(self) -> dict[str, object]:
        return {"logrows": self.logrows, "cid": self.cid, "sha256": self.sha256, "size": self.size,
                "source": self.source, "path": str(self.path)}


class CeremonyStore:
    """The ceremony SRS files of one HOME (``root`` is HOME/srs), each checked against ``pins`` when it comes in."""

    def __init__(self, root: Path, pins: Mapping[int, str] | None = None,
                 table_check: TableCheck | None | Literal["ezkl"] = "ezkl") -> None:
        self.root = root
        self.pins = CEREMONY_PINS if pins is None else pins
        self.table_check = ezkl_table_check if table_check == "ezkl" else table_check
        self.files = root / "ceremony"
        self.index_path = root / "ceremony.json"

    # --- reading ----------------------------------------------------------------------------------
    def entries(self) -> list[CeremonyEntry]:
        """Every recorded file whose bytes are still in the store, by logrows."""
        index = self._index()
        found = [CeremonyEntry(int(k), str(e["cid"]), str(e["sha256"]), int(str(e["size"])), str(e["source"]),
                               self.files / validate_cid(str(e["cid"]))) for k, e in index.items()]
        return sorted((e for e in found if e.path.is_file()), key=lambda e: e.logrows)

    def for_logrows(self, logrows: int) -> CeremonyEntry | None:
        """The smallest stored file that serves a circuit of ``logrows`` (a larger SRS serves a smaller circuit:
        EZKL downsizes it when it loads it)."""
        return next((e for e in self.entries() if e.logrows >= logrows), None)

    # --- taking a file in -------------------------------------------------------------------------
    def fetch(self, logrows: int, url: str, *, progress: Progress | None = None,
              timeout_s: float = 60.0) -> CeremonyEntry:
        """Download ``url`` (streamed to a temporary file, at most ``size_cap(logrows)`` bytes), check its
        sha256 against the pin for ``logrows`` and store it. Nothing is stored unless the hash is the pin."""
        expected = self._pin(logrows)
        if not url.startswith(("https://", "http://")):
            raise UsageError(f"--url must be an http(s) URL, not {url!r}")
        cap = size_cap(logrows)
        try:
            with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise ArtifactNotFound(f"the ceremony SRS for logrows {logrows} could not be downloaded: {url} "
                                           f"answered HTTP {response.status_code}", url=url, logrows=logrows)
                total = _length(response.headers.get("content-length"))
                if total is not None and total > cap:
                    raise ArtifactCorrupt(f"{url} is {total} bytes, more than a ceremony SRS for logrows {logrows} "
                                          f"({cap}): refused, nothing stored", url=url, logrows=logrows)
                return self._take(response.iter_bytes(CHUNK), logrows, expected, url, cap, total, progress)
        except httpx.HTTPError as exc:
            raise ArtifactNotFound(f"the ceremony SRS for logrows {logrows} could not be downloaded from {url} "
                                   f"({type(exc).__name__}: {exc}); on a machine without network copy the file "
                                   f"by hand and run 'proofmarket srs import FILE --logrows {logrows}'",
                                   url=url, logrows=logrows) from exc

    def import_file(self, path: Path, logrows: int | None = None) -> CeremonyEntry:
        """Check a file copied by hand against the pin for ``logrows`` (unset: the logrows whose pin its hash
        is) and store it."""
        if not path.is_file():
            raise UsageError(f"SRS file {path} does not exist")
        size = path.stat().st_size
        expected = self._pin(logrows) if logrows is not None else None
        cap = size_cap(logrows if logrows is not None else max(self.pins, default=0))
        if size > cap:
            raise ArtifactCorrupt(f"{path} is {size} bytes, more than a ceremony SRS"
                                  + (f" for logrows {logrows}" if logrows is not None else "")
                                  + f" ({cap}): refused, nothing stored", path=str(path))
        with open(path, "rb") as f:
            return self._take(iter(lambda: f.read(CHUNK), b""), logrows, expected, str(path), cap, size, None)

    # --- inside -----------------------------------------------------------------------------------
    def _pin(self, logrows: int) -> str:
        pin = self.pins.get(logrows)
        if pin is None:
            known = f"{min(self.pins)}-{max(self.pins)}" if self.pins else "none"
            raise UsageError(f"no ceremony SRS is pinned for logrows {logrows} (pinned: {known})", logrows=logrows)
        return pin.lower()

    def _take(self, chunks: Iterator[bytes], logrows: int | None, expected: str | None, source: str, cap: int,
              total: int | None, progress: Progress | None) -> CeremonyEntry:
        self.files.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(dir=self.files, prefix=".part-", delete=False)  # noqa: SIM115
        tmp_path = Path(tmp.name)
        try:
            digest, size = _copy_hashed(chunks, tmp, cap, source, progress, total)
            got = digest.hex()
            logrows, expected = self._match(got, logrows, expected, source)
            if self.table_check is not None:
                self.table_check(tmp_path, logrows)  # the very bytes stored, checked by EZKL's own table
            cid = cid_from_digest(digest)
            dest = self.files / cid
            os.replace(tmp_path, dest)
        except BaseException:
            tmp.close()
            tmp_path.unlink(missing_ok=True)
            raise
        entry = CeremonyEntry(logrows, cid, got, size, source, dest)
        self._record(entry)
        return entry

    def _match(self, got: str, logrows: int | None, expected: str | None, source: str) -> tuple[int, str]:
        if logrows is None:
            by_hash = {h.lower(): k for k, h in self.pins.items()}
            if got not in by_hash:
                raise ArtifactCorrupt(f"{source} has sha256 {got}, which is not the pinned ceremony SRS of any "
                                      "logrows: refused, nothing stored", sha256=got)
            return by_hash[got], got
        if got != expected:
            raise ArtifactCorrupt(f"{source} is not the ceremony SRS for logrows {logrows}: expected sha256 "
                                  f"{expected}, got {got}; refused, nothing stored",
                                  expected=expected, got=got, logrows=logrows)
        return logrows, got

    def _index(self) -> dict[str, dict[str, object]]:
        if not self.index_path.is_file():
            return {}
        try:
            doc = json.loads(self.index_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactCorrupt(f"{self.index_path} is not readable JSON ({exc})") from exc
        return doc if isinstance(doc, dict) else {}

    def _record(self, entry: CeremonyEntry) -> None:
        index = self._index()
        index[str(entry.logrows)] = {"cid": entry.cid, "sha256": entry.sha256, "size": entry.size,
                                     "source": entry.source, "added_at": int(time.time())}
        tmp = self.index_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True))
        os.replace(tmp, self.index_path)


def _copy_hashed(chunks: Iterator[bytes], out: IO[bytes], cap: int, source: str, progress: Progress | None,
                 total: int | None) -> tuple[bytes, int]:
    h = hashlib.sha256()
    size = 0
    with out:
        for chunk in chunks:
            size += len(chunk)
            if size > cap:
                raise ArtifactCorrupt(f"{source} is more than {cap} bytes, larger than the ceremony SRS it should "
                                      "be: refused, nothing stored", cap=cap)
            h.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress(size, total)
        out.flush()
        os.fsync(out.fileno())
    return h.digest(), size


def _length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
