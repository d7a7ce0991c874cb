"""Unsigned varints and the small subset of DAG-CBOR a CARv1 header needs.

Supported values: ``int`` (>= 0 or < 0), ``str``, ``bytes``, ``list``, ``dict`` with ``str`` keys,
and :class:`CIDLink` (CBOR tag 42 around a byte string: 0x00 then the binary CID). Map keys are
sorted the DAG-CBOR way: shorter encoded key first, then bytewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, TypeAlias

from proofmarket.core.errors import StoreError

_MAX_DEPTH = 16


@dataclass(frozen=True)
class CIDLink:
    """A link to a CID, given as its binary bytes (not the text form)."""

    cid: bytes


DagCborValue: TypeAlias = "int | str | bytes | list[DagCborValue] | dict[str, DagCborValue] | CIDLink"


def encode_varint(n: int) -> bytes:
    """An unsigned varint (multiformats' ``varint``, the one IPFS specifies)."""
    if n < 0:
        raise ValueError("varints are unsigned")
    from multiformats import varint  # loads with the first CAR or DAG, not with the store

    return varint.encode(n)


def read_varint(f: BinaryIO) -> int | None:
    """Read one varint from a stream; None at a clean end of stream. At most 9 bytes (2^63); minimally encoded."""
    first = f.read(1)
    if not first:
        return None
    raw = first
    while raw[-1] & 0x80 and len(raw) < 9:
        more = f.read(1)
        if not more:
            raise StoreError("The CAR data ends inside a varint.")
        raw += more
    try:
        from multiformats import varint

        value, _, _ = varint.decode_raw(raw)
    except ValueError as exc:
        raise StoreError(f"The CAR data holds a bad varint: {exc}") from exc
    return value


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a varint from ``buf`` at ``pos``; return (value, next position)."""
    try:
        from multiformats import varint

        value, used, _ = varint.decode_raw(buf[pos:pos + 9])
    except ValueError as exc:
        raise StoreError(f"A CID holds a bad varint: {exc}") from exc
    return value, pos + used


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([major << 5 | info]) + n.to_bytes(width, "big")
    raise ValueError("integer too large for CBOR")


def dag_cbor_encode(value: DagCborValue) -> bytes:
    if isinstance(value, bool) or value is None:
        raise TypeError("booleans and null are not needed here and not supported")
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _head(3, len(data)) + data
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(dag_cbor_encode(v) for v in value)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("DAG-CBOR map keys must be strings")
        items = sorted(
            ((dag_cbor_encode(k), dag_cbor_encode(v)) for k, v in value.items()),
            key=lambda kv: (len(kv[0]), kv[0]),
        )
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    if isinstance(value, CIDLink):
        return b"\xd8\x2a" + dag_cbor_encode(b"\x00" + value.cid)
    raise TypeError(f"cannot DAG-CBOR encode {type(value).__name__}")


def dag_cbor_decode(data: bytes) -> DagCborValue:
    """Decode one DAG-CBOR value that must span all of ``data``."""
    value, pos = _decode(data, 0, 0)
    if pos != len(data):
        raise StoreError("Trailing bytes after the DAG-CBOR value.")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[DagCborValue, int]:
    if depth > _MAX_DEPTH or pos >= len(data):
        raise StoreError("The DAG-CBOR value is truncated or nested too deep.")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    pos += 1
    if info < 24:
        n = info
    elif info <= 27:
        width = 1 << (info - 24)
        if pos + width > len(data):
            raise StoreError("The DAG-CBOR value is truncated.")
        n = int.from_bytes(data[pos : pos + width], "big")
        pos += width
    else:
        raise StoreError("Indefinite lengths and simple values are not valid here.")
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major in (2, 3):
        if pos + n > len(data):
            raise StoreError("The DAG-CBOR value is truncated.")
        chunk = data[pos : pos + n]
        try:
            return (chunk if major == 2 else chunk.decode("utf-8")), pos + n
        except UnicodeDecodeError as e:
            raise StoreError("A DAG-CBOR text string is not UTF-8.") from e
    if major == 4:
        items: list[DagCborValue] = []
        for _ in range(n):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        out: dict[str, DagCborValue] = {}
        for _ in range(n):
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, str):
                raise StoreError("DAG-CBOR map keys must be text strings.")
            if key in out:
                raise StoreError(f"The DAG-CBOR map repeats the key {key!r}.")
            out[key], pos = _decode(data, pos, depth + 1)
        return out, pos
    if major == 6 and n == 42:
        inner, pos = _decode(data, pos, depth + 1)
        if not isinstance(inner, bytes) or inner[:1] != b"\x00":
            raise StoreError("A CID link (tag 42) must wrap bytes that start with 0x00.")
        return CIDLink(inner[1:]), pos
    raise StoreError(f"Unsupported DAG-CBOR item (major type {major}).")
