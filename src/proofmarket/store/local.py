"""The artifact store port and its local-filesystem adapter.

Layout: ``<root>/blobs/<last 2 chars of cid>/<cid>``. Every CID is checked with
:func:`validate_cid` before it becomes part of a path, so a CID can never walk out of the root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from proofmarket.core import jsonlimits
from proofmarket.core.canonical import canonical_json
from proofmarket.core.errors import ArtifactNotFound, StoreError
from proofmarket.store.cid import CHUNK_SIZE, cid_for_bytes, cid_for_file, cid_from_digest, validate_cid

DEFAULT_MAX_SIZE = 8 * 1024**3
"""8 GiB: the largest blob a LocalStore accepts unless told otherwise (the node's: PROOFMARKET_MAX_ARTIFACT_BYTES)."""


@runtime_checkable
class ArtifactStore(Protocol):
    """A content-addressed blob store: bytes in, CID out, and back."""

    def put(self, data: bytes, *, durable: bool = True) -> str: ...
    def put_file(self, path: str | Path) -> str: ...
    def get(self, cid: str) -> bytes: ...
    def path(self, cid: str) -> Path:
        """A local file holding the blob, for tools that need a path. Treat it as read-only."""
        ...

    def has(self, cid: str) -> bool: ...
    def size(self, cid: str) -> int: ...
    def put_json(self, obj: Any, *, durable: bool = True) -> str: ...
    def get_json(self, cid: str) -> Any: ...


class LocalStore:
    """An :class:`ArtifactStore` in a local directory, with atomic, idempotent writes."""

    def __init__(self, root: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.root = Path(root)
        self.max_size = max_size

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- writing ----------------------------------------------------------------------------
    def put(self, data: bytes, *, durable: bool = True) -> str:
        """Store ``data``; ``durable=False`` skips the fsyncs (for a copy that can be rebuilt from what is
        stored durably: a crash may lose it, never leaves a partial file under its CID)."""
        self._check_size(len(data))
        cid = cid_for_bytes(data)
        dest = self._blob_path(cid)
        if not dest.is_file():
            self._write_atomic(cid, dest, lambda f: f.write(data), durable=durable)
        return cid

    def put_file(self, path: str | Path) -> str:
        """Store a file's bytes. Hashes first (no write if already stored), then copies in chunks."""
        src = Path(path)
        try:
            self._check_size(src.stat().st_size)
        except OSError as e:
            raise StoreError(f"Cannot read {src}: {e.strerror or e}.", path=str(src)) from e
        cid = cid_for_file(src)
        dest = self._blob_path(cid)
        if not dest.is_file():
            self._write_atomic(cid, dest, lambda f: self._copy_checked(src, f, cid))
        return cid

    def put_json(self, obj: Any, *, durable: bool = True) -> str:
        return self.put(canonical_json(obj), durable=durable)

    # --- reading ----------------------------------------------------------------------------
    def get(self, cid: str) -> bytes:
        p = self._blob_path(cid)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise self._not_found(cid) from None
        except OSError as e:
            raise StoreError(f"Cannot read artifact {cid}: {e.strerror or e}.", cid=cid) from e

    def get_json(self, cid: str) -> Any:
        try:
            return jsonlimits.loads(self.get(cid), what=f"artifact {cid}")  # depth-checked: may come from others
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"Artifact {cid} is not UTF-8 JSON: {e}.", cid=cid) from e

    def path(self, cid: str) -> Path:
        p = self._blob_path(cid)
        if not p.is_file():
            raise self._not_found(cid)
        return p

    def has(self, cid: str) -> bool:
        return self._blob_path(cid).is_file()

    def size(self, cid: str) -> int:
        try:
            return self._blob_path(cid).stat().st_size
        except FileNotFoundError:
            raise self._not_found(cid) from None

    def verify(self, cid: str) -> bool:
        """Rehash the stored blob: True if its bytes still match ``cid``, False if corrupted."""
        return cid_for_file(self.path(cid)) == cid

    # --- internals --------------------------------------------------------------------------
    def _blob_path(self, cid: str) -> Path:
        cid = validate_cid(cid)
        return self.root / "blobs" / cid[-2:] / cid

    def _not_found(self, cid: str) -> ArtifactNotFound:
        return ArtifactNotFound(f"No artifact with CID {cid} in the store at {self.root}.", cid=cid)

    def _check_size(self, n: int) -> None:
        if n > self.max_size:
            raise StoreError(
                f"The artifact is {n} bytes, over this store's limit of {self.max_size} bytes.",
                size=n,
                max_size=self.max_size,
            )

    def _copy_checked(self, src: Path, out: BinaryIO, cid: str) -> None:
        """Copy ``src`` into ``out``, rehashing: the file must not change between hash and copy."""
        h, n = hashlib.sha256(), 0
        with open(src, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                n += len(chunk)
                self._check_size(n)
                h.update(chunk)
                out.write(chunk)
        if cid_from_digest(h.digest()) != cid:
            raise StoreError(f"{src} changed while it was being stored.", path=str(src))

    def _write_atomic(self, cid: str, dest: Path, write: Callable[[BinaryIO], object], durable: bool = True) -> None:
        """Write to a temp file in ``dest``'s directory, fsync (when ``durable``), then ``os.replace`` into place."""
        tmp: str | None = None
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{cid[-8:]}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            tmp = None
            if durable:
                _fsync_dir(dest.parent)
        except OSError as e:
            raise StoreError(f"Cannot write artifact {cid}: {e.strerror or e}.", cid=cid) from e
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _fsync_dir(d: Path) -> None:
    """Make the rename durable (POSIX). Not every platform can open a directory: best effort."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
