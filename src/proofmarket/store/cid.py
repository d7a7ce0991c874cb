"""Content identifiers: IPFS CIDv1, raw codec, sha2-256, base32 lower ("bafkrei..."), with ``multiformats``.

    CID bytes = varint(1) ++ varint(0x55 raw) ++ multihash(0x12 sha2-256, 0x20 length, digest)
    CID text  = "b" ++ base32(RFC 4648, lower case, no padding)(CID bytes)

For a blob of at most one 256 KiB chunk this is also the CID IPFS gives the file (a single raw leaf). Larger
files get a UnixFS (dag-pb, "bafybei...") root from IPFS (``store/unixfs.py`` computes it): the CID here always
names the whole blob's sha2-256. Every CID that reaches a file path passes
``validate_cid`` first (only this one form, canonical text).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

from proofmarket.core.errors import InvalidCID, StoreError

CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])
"""CIDv1, raw codec, sha2-256 multihash, 32-byte digest."""
CID_BYTES_LEN = len(CID_PREFIX) + 32
CID_TEXT_LEN = 59
CHUNK_SIZE = 1 << 20

_CID_RE = re.compile(r"bafkrei[a-z2-7]{52}")


def cid_from_digest(digest: bytes) -> str:
    """The CID text for a sha2-256 digest of a raw blob."""
    if len(digest) != 32:
        raise ValueError(f"a sha2-256 digest is 32 bytes, not {len(digest)}")
    return _b32(CID_PREFIX + digest)


def _b32(raw: bytes) -> str:
    """'b' + RFC 4648 base32, lower case, unpadded (what ``multiformats`` writes, at a tenth of its cost: every
    store read and write passes here)."""
    return "b" + base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def cid_for_bytes(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) of ``data``."""
    return cid_from_digest(hashlib.sha256(data).digest())


def cid_for_file(path: str | Path) -> str:
    """The CID of a file's bytes, hashed in 1 MiB chunks (the file is never held whole in memory)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                h.update(chunk)
    except OSError as e:
        raise StoreError(f"Cannot read {path} to hash it: {e.strerror or e}.", path=str(path)) from e
    return cid_from_digest(h.digest())


def validate_cid(s: str) -> str:
    """Return ``s`` unchanged if it is exactly a CIDv1 raw sha2-256 base32 CID, else raise InvalidCID.

    This is the guard that runs before any CID reaches a file path: only ``[a-z2-7]`` after the
    ``bafkrei`` prefix, exact length, and the bytes must decode back to the same text.
    """
    _checked(s)
    return s


def _checked(s: str) -> bytes:
    """The 36 bytes of ``s`` once it passes ``validate_cid``'s checks (one decoding for both)."""
    if not isinstance(s, str):
        raise InvalidCID(f"A CID must be a string, not {type(s).__name__}.")
    shown = s if len(s) <= 80 else s[:77] + "..."
    if _CID_RE.fullmatch(s) is None:
        raise InvalidCID(
            f"{shown!r} is not a valid CID: expected a 59-character CIDv1 'bafkrei...' "
            "(raw, sha2-256, lower-case base32).",
            cid=shown,
        )
    body = s[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError) as e:
        raise InvalidCID(f"{shown!r} is not a valid CID: {e}.", cid=shown) from e
    if raw[: len(CID_PREFIX)] != CID_PREFIX or len(raw) != CID_BYTES_LEN or _b32(raw) != s:
        raise InvalidCID(f"{shown!r} is not a valid CID: its bytes are not canonical.", cid=shown)
    return raw


def cid_to_bytes(cid: str) -> bytes:
    """The 36 binary bytes of a (validated) CID, as written inside CAR files."""
    return _checked(cid)


def cid_from_bytes(raw: bytes) -> str:
    """The text form of 36 binary CID bytes; raises InvalidCID unless raw, sha2-256, CIDv1."""
    if len(raw) != CID_BYTES_LEN or raw[: len(CID_PREFIX)] != CID_PREFIX:
        raise InvalidCID("These bytes are not a CIDv1 raw sha2-256 CID.", hex=raw[:40].hex())
    return _b32(raw)


def digest_of(cid: str) -> bytes:
    """The sha2-256 digest inside a (validated) CID."""
    return cid_to_bytes(cid)[len(CID_PREFIX) :]


def multibase_b32(raw: bytes) -> str:
    """Multibase base32 text ('b' + RFC 4648 lower case, no padding) of any binary CID (raw, dag-pb, ...)."""
    from multiformats import CID  # a dag-pb or other codec: multiformats parses it (a raw CID never needs it)

    try:
        return str(CID.decode(raw).encode("base32"))
    except Exception as e:
        raise InvalidCID(f"these bytes are not a CID: {e}", hex=raw[:40].hex()) from e
