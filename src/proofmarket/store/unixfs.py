"""UnixFS files, the form in which IPFS nodes and gateways move files: ``ipfs add --cid-version=1``'s layout.

A blob of at most one chunk (256 KiB) is a single raw block, so its UnixFS CID is the store's own raw CID. A
larger blob is cut into 256 KiB raw leaves (CIDv1, raw, sha2-256) under dag-pb nodes of at most 174 links each
(the balanced layout): the root is a dag-pb CID ("bafybei..."). Kubo's defaults with CIDv1 and the
``@ipld/unixfs`` library's, so any IPFS node computes the same root from the same bytes.

    PBNode  = (0x12 len PBLink)* 0x0a len Data          links first, then the UnixFS data (dag-pb's order)
    PBLink  = 0x0a len CID  0x12 0x00  0x18 Tsize       the child's CID, an empty name, its DAG size
    Data    = 0x08 0x02  0x18 filesize  (0x20 size)*    a File with its size and each child's file bytes

The store keeps naming each blob by its raw CID (sha2-256 of the whole blob, ``store/cid.py``); a manifest's
``ArtifactRef.unixfs`` names the root of a blob over one chunk, so a gateway can be asked for it (``read_file``
reads a DAG back block by block, every block checked against its CID).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from proofmarket.core.errors import StoreError
from proofmarket.store._codec import decode_varint, encode_varint
from proofmarket.store.local import ArtifactStore

if TYPE_CHECKING:  # multiformats loads when a DAG is read, not with the store
    from multiformats import CID

CHUNK = 262144
WIDTH = 174
MAX_DEPTH = 8
RAW, DAG_PB = 0x55, 0x70
_FILE, _RAW_TYPE = 2, 0


@dataclass(frozen=True)
class _Link:
    cid: bytes  # binary CID
    tsize: int  # bytes of the child's whole DAG (blocks included)
    size: int  # bytes of file content under the child


def block_cid(data: bytes, codec: int) -> bytes:
    """The binary CIDv1 (sha2-256) of a block of ``codec`` (raw or dag-pb)."""
    if codec not in (RAW, DAG_PB):
        raise ValueError(f"no block codec {codec:#x} here: raw or dag-pb")
    return bytes([0x01, codec, 0x12, 0x20]) + hashlib.sha256(data).digest()  # CIDv1, codec, sha2-256 (32 bytes)


def cid_text(cid: bytes) -> str:
    from multiformats import CID  # parses (and so checks) any binary CID; loads when a DAG is first read

    return str(CID.decode(cid).encode("base32"))


def file_blocks(read: Callable[[int], bytes], chunk: int = CHUNK, width: int = WIDTH) -> Iterator[tuple[bytes, bytes]]:
    """Every block of a file's UnixFS DAG as (binary CID, bytes): leaves in file order, then each level's nodes;
    the root is the last one. ``read(n)`` returns up to ``n`` bytes, ``b""`` at the end."""
    links: list[_Link] = []
    while True:
        data = _read_full(read, chunk)
        if data or not links:
            cid = block_cid(data, RAW)
            links.append(_Link(cid, len(data), len(data)))
            yield cid, data
        if len(data) < chunk:
            break
    while len(links) > 1:
        level = []
        for start in range(0, len(links), width):
            group = links[start:start + width]
            node = encode_node(group)
            cid = block_cid(node, DAG_PB)
            level.append(_Link(cid, len(node) + sum(link.tsize for link in group), sum(link.size for link in group)))
            yield cid, node
        links = level


def root_of_file(path: str | Path, chunk: int = CHUNK) -> str:
    """The UnixFS root CID of a file (its raw CID when it fits in one chunk), read once in chunks."""
    try:
        with open(path, "rb") as f:
            return _root(file_blocks(f.read, chunk))
    except OSError as e:
        raise StoreError(f"Cannot read {path} to chunk it: {e.strerror or e}.", path=str(path)) from e


def root_of_blob(store: ArtifactStore, cid: str) -> str:
    """The UnixFS root of a stored blob: its own CID when it fits in one chunk."""
    return cid if store.size(cid) <= CHUNK else root_of_file(store.path(cid))


def root_of_bytes(data: bytes, chunk: int = CHUNK) -> str:
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        piece = bytes(view[pos:pos + n])
        pos += len(piece)
        return piece

    return _root(file_blocks(read, chunk))


def _root(blocks: Iterator[tuple[bytes, bytes]]) -> str:
    """The last block's CID (the root), the blocks themselves dropped as they come."""
    root = b""
    for cid, _ in blocks:
        root = cid
    return cid_text(root)


def encode_node(links: list[_Link]) -> bytes:
    data = _field_varint(1, _FILE) + _field_varint(3, sum(link.size for link in links))
    data += b"".join(_field_varint(4, link.size) for link in links)
    out = b"".join(_field_bytes(2, _field_bytes(1, link.cid) + _field_bytes(2, b"") + _field_varint(3, link.tsize))
                   for link in links)
    return out + _field_bytes(1, data)


@dataclass(frozen=True)
class Node:
    """A decoded dag-pb file node: its children (CID, file bytes under it) and the file bytes it holds itself."""

    children: list[tuple[bytes, int]]
    data: bytes
    filesize: int


def decode_node(block: bytes) -> Node:
    """A dag-pb UnixFS File (or Raw) node; StoreError for anything else (directories, symlinks, bad bytes)."""
    links: list[bytes] = []
    unixfs = None
    for field, value in _fields(block):
        if field == 2 and isinstance(value, bytes):
            cid = next((v for f, v in _fields(value) if f == 1 and isinstance(v, bytes)), None)
            if cid is None:
                raise StoreError("A dag-pb link has no CID.")
            links.append(cid)
        elif field == 1 and isinstance(value, bytes):
            unixfs = value
        else:
            raise StoreError(f"A dag-pb node holds an unknown field {field}.")
    if unixfs is None:
        raise StoreError("A dag-pb node has no UnixFS data.")
    kind, data, filesize, sizes = -1, b"", None, []
    for field, value in _fields(unixfs):
        if field == 1 and isinstance(value, int):
            kind = value
        elif field == 2 and isinstance(value, bytes):
            data = value
        elif field == 3 and isinstance(value, int):
            filesize = value
        elif field == 4 and isinstance(value, int):
            sizes.append(value)
        else:  # hashType, fanout, mode, mtime or anything else: no file this node writes has them
            raise StoreError(f"A UnixFS file node holds an unknown or unexpected field {field}.")
    if kind not in (_FILE, _RAW_TYPE):
        raise StoreError(f"This UnixFS node is not a file (type {kind}).")
    if len(sizes) != len(links):
        raise StoreError("A UnixFS file node names sizes for a different number of children than it links.")
    size = len(data) + sum(sizes) if filesize is None else filesize
    if size != len(data) + sum(sizes):
        raise StoreError("A UnixFS file node's size is not the sum of its parts.")
    return Node(list(zip(links, sizes, strict=True)), data, size)


def read_file(root: str, get_block: Callable[[bytes], bytes], max_bytes: int) -> bytes:
    """The bytes of the UnixFS file ``root``: each block from ``get_block(binary CID)`` is checked against its CID
    (sha2-256 only), dag-pb nodes are walked in order, the total is capped at ``max_bytes``, the blocks fetched at
    one per KiB of it (plus a margin) and the bytes fetched at twice it (plus a MiB): a DAG of empty or repeated
    children, or of blocks padded with links, cannot make a reader fetch forever or download gigabytes for a tiny
    file."""
    out = bytearray()
    budget = [max_bytes // 1024 + 1024]
    fetched = [2 * max_bytes + (1 << 20)]

    def walk(cid: bytes, expected: int | None, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise StoreError(f"The UnixFS file {root} is nested deeper than {MAX_DEPTH} levels.")
        budget[0] -= 1
        if budget[0] < 0:
            raise StoreError(f"The UnixFS file {root} is made of more blocks than a file of its size needs.")
        parsed = _decode_cid(cid)
        if parsed.hashfun.name != "sha2-256" or parsed.codec.code not in (RAW, DAG_PB):
            raise StoreError(f"{parsed} is not a sha2-256 raw or dag-pb block.")
        block = get_block(cid)
        fetched[0] -= len(block)
        if fetched[0] < 0:
            raise StoreError(f"The UnixFS file {root} takes more bytes to fetch than a file of its size needs.")
        if hashlib.sha256(block).digest() != bytes(parsed.raw_digest):
            raise StoreError(f"The block {parsed} does not hash to its CID.")
        if parsed.codec.code == RAW:
            content, children = block, []
        else:
            node = decode_node(block)
            content, children = node.data, node.children
            if expected is not None and node.filesize != expected:
                raise StoreError(f"The block {parsed} holds {node.filesize} bytes, its parent says {expected}.")
            if node.filesize + len(out) > max_bytes:
                raise StoreError(f"The UnixFS file {root} is larger than {max_bytes} bytes.")
        if parsed.codec.code == RAW and expected is not None and len(block) != expected:
            raise StoreError(f"The block {parsed} holds {len(block)} bytes, its parent says {expected}.")
        out.extend(content)
        if len(out) > max_bytes:
            raise StoreError(f"The UnixFS file {root} is larger than {max_bytes} bytes.")
        for child, size in children:
            walk(child, size, depth + 1)

    walk(bytes(_decode_cid(root)), None, 0)
    return bytes(out)


def unixfs_roots(doc: object, depth: int = 0) -> dict[str, tuple[str, int | None]]:
    """Every ``{"cid", "unixfs", "size"}`` reference in a document (a manifest's artifacts): cid -> (root, size)."""
    found: dict[str, tuple[str, int | None]] = {}
    if depth > 32:
        return found
    if isinstance(doc, dict):
        if isinstance(doc.get("cid"), str) and isinstance(doc.get("unixfs"), str):
            size = doc.get("size")
            found[doc["cid"]] = (doc["unixfs"], size if isinstance(size, int) and size >= 0 else None)
        for value in doc.values():
            found.update(unixfs_roots(value, depth + 1))
    elif isinstance(doc, list):
        for value in doc:
            found.update(unixfs_roots(value, depth + 1))
    return found


def _decode_cid(cid: bytes | str) -> CID:
    from multiformats import CID

    try:
        return CID.decode(cid)
    except Exception as e:  # the library's decoding errors: bad multibase, varint or multihash
        raise StoreError(f"{cid!r} is not a CID: {e}.") from e


def _read_full(read: Callable[[int], bytes], n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        piece = read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def _field_varint(field: int, value: int) -> bytes:
    return encode_varint(field << 3) + encode_varint(value)


def _field_bytes(field: int, value: bytes) -> bytes:
    return encode_varint(field << 3 | 2) + encode_varint(len(value)) + value


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Protobuf fields (varints and length-delimited only, as in dag-pb and UnixFS)."""
    pos = 0
    try:
        while pos < len(buf):
            key, pos = decode_varint(buf, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = decode_varint(buf, pos)
                yield field, value
            elif wire == 2:
                length, pos = decode_varint(buf, pos)
                if pos + length > len(buf):
                    raise StoreError("A protobuf field runs past the end of its block.")
                yield field, buf[pos:pos + length]
                pos += length
            else:
                raise StoreError(f"A dag-pb block is malformed: protobuf wire type {wire}, which neither dag-pb "
                                 "nor UnixFS uses.")
    except StoreError as e:
        raise StoreError(e.message if "malformed" in e.message else f"A dag-pb block is malformed: {e.message}") \
            from e
