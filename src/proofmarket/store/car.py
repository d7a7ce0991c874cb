"""CARv1 files (IPFS content archives): export blobs from a store, read them back, import them.

Layout: ``varint(len(header)) ++ dag-cbor({"roots": [CID...], "version": 1})``, then per block
``varint(len(cid_bytes) + len(data)) ++ cid_bytes ++ data``. ``proofmarket export`` writes each blob as
one raw block (``import`` reads them back by the store's own CIDs); with ``unixfs=True`` (what is pinned to IPFS)
a blob over one chunk goes as its UnixFS DAG of 256 KiB raw leaves (``store/unixfs.py``) under its root, the form
IPFS nodes and gateways transfer (a single raw block over 1 MiB is one they refuse).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from proofmarket.core.errors import InvalidCID, StoreError
from proofmarket.store._codec import (
    CIDLink,
    dag_cbor_decode,
    dag_cbor_encode,
    decode_varint,
    encode_varint,
    read_varint,
)
from proofmarket.store.cid import CHUNK_SIZE, cid_to_bytes, digest_of, multibase_b32, validate_cid
from proofmarket.store.local import DEFAULT_MAX_SIZE, ArtifactStore
from proofmarket.store.unixfs import CHUNK, file_blocks, root_of_blob

_MAX_HEADER = 1 << 20
_SHA2_256 = 0x12


def export_car(store: ArtifactStore, cids: list[str], out: Path, roots: list[str] | None = None, *,
               unixfs: bool = False) -> Path:
    """Write the blobs ``cids`` (duplicates dropped, order kept) from ``store`` to the CARv1 ``out``.

    ``roots`` defaults to all of ``cids`` (each blob is its own DAG); with ``unixfs`` the roots are the blobs'
    UnixFS roots (``roots``, when given, are those: ``unixfs.root_of_blob`` of each blob). Every blob is rehashed
    while it is copied; a corrupted blob raises StoreError and leaves no file at ``out``.
    """
    blocks = list(dict.fromkeys(validate_cid(c) for c in cids))
    if unixfs:  # the caller may know the roots already (a pinner needs them too): each big blob is read once less
        from multiformats import CID

        root_bytes = [bytes(CID.decode(r)) for r in (roots if roots is not None else
                                                      [root_of_blob(store, c) for c in blocks])]
    else:
        root_bytes = [cid_to_bytes(r) for r in (blocks if roots is None else [validate_cid(r) for r in roots])]
    header = dag_cbor_encode({"roots": [CIDLink(r) for r in root_bytes], "version": 1})
    out = Path(out)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(encode_varint(len(header)) + header)
            written: set[bytes] = set()
            for cid in blocks:
                if unixfs and store.size(cid) > CHUNK:
                    _write_dag(store, cid, f, written)
                else:
                    _write_block(store, cid, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        tmp = None
    except OSError as e:
        raise StoreError(f"Cannot write the CAR file {out}: {e.strerror or e}.", path=str(out)) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return out


def _write_block(store: ArtifactStore, cid: str, f: BinaryIO) -> None:
    size, raw = store.size(cid), cid_to_bytes(cid)
    f.write(encode_varint(len(raw) + size) + raw)
    h, n = hashlib.sha256(), 0
    with open(store.path(cid), "rb") as src:
        while chunk := src.read(CHUNK_SIZE):
            h.update(chunk)
            n += len(chunk)
            f.write(chunk)
    if n != size or h.digest() != digest_of(cid):
        raise StoreError(f"Artifact {cid} is corrupted in the store; not exporting it.", cid=cid)


def _write_dag(store: ArtifactStore, cid: str, f: BinaryIO, written: set[bytes]) -> None:
    """A blob's UnixFS DAG, each block once per CAR; the blob's bytes are checked against its CID on the way."""
    h = hashlib.sha256()
    with open(store.path(cid), "rb") as src:
        def read(n: int) -> bytes:
            data = src.read(n)
            h.update(data)
            return data

        for block_cid, data in file_blocks(read):
            if block_cid not in written:
                written.add(block_cid)
                f.write(encode_varint(len(block_cid) + len(data)) + block_cid + data)
    if h.digest() != digest_of(cid):
        raise StoreError(f"Artifact {cid} is corrupted in the store; not exporting it.", cid=cid)


def read_car(path: str | Path, *, verify: bool = True) -> tuple[list[str], list[tuple[str, bytes]]]:
    """Read a CARv1 file: (root CIDs, [(block CID, block bytes), ...]) in file order.

    CIDs come back as base32 CIDv1 text whatever their codec (raw 'bafkrei...', dag-pb 'bafybei...').
    With ``verify`` (default), every block must be sha2-256 addressed and match its digest.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            remaining = os.fstat(f.fileno()).st_size
            hlen = read_varint(f)
            if hlen is None or hlen > min(_MAX_HEADER, remaining):
                raise StoreError(f"{path} is not a CAR file: bad header length.", path=str(path))
            header = dag_cbor_decode(f.read(hlen))
            roots = _parse_header(header, path)
            blocks: list[tuple[str, bytes]] = []
            while (blen := read_varint(f)) is not None:
                if blen > remaining - f.tell() or blen > DEFAULT_MAX_SIZE + 100:
                    raise StoreError(f"{path} is truncated or holds an oversized block.", path=str(path))
                blocks.append(_parse_block(f.read(blen), verify))
    except OSError as e:
        raise StoreError(f"Cannot read the CAR file {path}: {e.strerror or e}.", path=str(path)) from e
    return roots, blocks


def import_car(store: ArtifactStore, path: str | Path) -> list[str]:
    """Put every block of a CAR file into ``store``; all blocks must be raw 'bafkrei' blobs.

    Nothing is stored unless every block is acceptable. Returns the block CIDs in file order.
    """
    _, blocks = read_car(path)
    for cid, _data in blocks:
        try:
            validate_cid(cid)
        except InvalidCID:
            raise StoreError(
                f"{path} holds block {cid}, which is not a raw sha2-256 blob; only raw blocks import.",
                cid=cid,
            ) from None
    for cid, data in blocks:
        if store.put(data) != cid:  # pragma: no cover - read_car verified the digest already
            raise StoreError(f"Block {cid} did not hash to its CID on import.", cid=cid)
    return [cid for cid, _ in blocks]


def _parse_header(header: object, path: Path) -> list[str]:
    if not isinstance(header, dict) or header.get("version") != 1:
        raise StoreError(f"{path} is not a CARv1 file (header version is not 1).", path=str(path))
    roots = header.get("roots")
    if not isinstance(roots, list):
        raise StoreError(f"{path} has a CAR header without a list of root CIDs.", path=str(path))
    out = []
    for r in roots:
        if not isinstance(r, CIDLink) or _parse_cid(r.cid)[1] != len(r.cid):
            raise StoreError(f"{path} has a malformed root CID in its header.", path=str(path))
        out.append(_parse_cid(r.cid)[0])
    return out


def _parse_block(block: bytes, verify: bool) -> tuple[str, bytes]:
    cid, end, mh_code, digest = _parse_cid(block)
    data = block[end:]
    if verify and (mh_code != _SHA2_256 or hashlib.sha256(data).digest() != digest):
        raise StoreError(f"CAR block {cid} does not match its CID (or is not sha2-256).", cid=cid)
    return cid, data


def _parse_cid(buf: bytes) -> tuple[str, int, int, bytes]:
    """Parse a binary CIDv1 at the start of ``buf``: (text, end offset, multihash code, digest)."""
    if buf[:2] == b"\x12\x20":
        raise StoreError("CIDv0 blocks are not supported; expected CIDv1.")
    version, pos = decode_varint(buf, 0)
    if version != 1:
        raise StoreError(f"Unsupported CID version {version}.")
    _codec, pos = decode_varint(buf, pos)
    mh_code, pos = decode_varint(buf, pos)
    mh_len, pos = decode_varint(buf, pos)
    if pos + mh_len > len(buf):
        raise StoreError("A CID is truncated.")
    end = pos + mh_len
    text = multibase_b32(buf[:end])
    return text, end, mh_code, buf[pos:end]
