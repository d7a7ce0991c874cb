"""UnixFS files: the same roots as @ipld/unixfs (Kubo's layout with CIDv1: raw leaves, balanced, 174 links) for
every tree shape, and a reader that takes only the blocks their CIDs name and a file of the size its nodes say."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from multiformats import CID

from proofmarket.core.errors import StoreError
from proofmarket.store import LocalStore
from proofmarket.store.cid import cid_for_bytes
from proofmarket.store.unixfs import (
    CHUNK,
    DAG_PB,
    RAW,
    _field_bytes,
    _field_varint,
    block_cid,
    file_blocks,
    read_file,
    root_of_blob,
    root_of_bytes,
    unixfs_roots,
)

ROOT = Path(__file__).resolve().parents[2]


def _js_root(path: Path, chunk: int | None = None) -> str:
    node = shutil.which("node")
    assert node is not None, "the UnixFS cross-check needs node (make setup)"
    args = [node, str(ROOT / "tests" / "support" / "unixfs_root.mjs"), str(path), *([str(chunk)] if chunk else [])]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout.strip()


@pytest.mark.parametrize("size", [0, 1, 16, 17, 16 * 174, 16 * 174 + 1, 16 * 174 * 174 + 5])
def test_every_tree_shape_has_the_root_the_js_library_gives(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    assert root_of_bytes(path.read_bytes(), chunk=16) == _js_root(path, 16)  # leaf, one level, two, three


def test_a_real_size_file_matches_and_a_small_one_is_its_raw_cid(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    big, small = os.urandom(3 * CHUNK + 7), os.urandom(CHUNK)
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    assert root_of_blob(store, store.put(big)) == _js_root(path)
    assert root_of_blob(store, store.put(small)) == cid_for_bytes(small)  # exactly one chunk: one raw block


def _blocks(data: bytes, chunk: int = 16) -> dict[bytes, bytes]:
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        pos += n
        return data[pos - n:pos]

    return dict(file_blocks(read, chunk))


def test_a_file_is_read_back_block_by_block() -> None:
    data = os.urandom(16 * 200 + 3)
    blocks = _blocks(data)
    root = root_of_bytes(data, chunk=16)
    assert read_file(root, blocks.__getitem__, len(data)) == data
    with pytest.raises(StoreError, match="larger than"):
        read_file(root, blocks.__getitem__, len(data) - 1)


def test_a_block_that_is_not_its_cid_is_refused() -> None:
    data = os.urandom(16 * 20)
    blocks = _blocks(data)
    root = root_of_bytes(data, chunk=16)
    leaf = next(cid for cid in blocks if CID.decode(cid).codec.code == RAW)
    forged = dict(blocks, **{})
    forged[leaf] = os.urandom(16)  # a gateway sends other bytes for one leaf
    with pytest.raises(StoreError, match="does not hash"):
        read_file(root, forged.__getitem__, 1 << 20)


def _node(links: list[tuple[bytes, int]], kind: int = 2, filesize: int | None = None, extra: bytes = b"") -> bytes:
    total = sum(size for _, size in links) if filesize is None else filesize
    data = _field_varint(1, kind) + _field_varint(3, total) + b"".join(_field_varint(4, s) for _, s in links) + extra
    return b"".join(_field_bytes(2, _field_bytes(1, c) + _field_bytes(2, b"") + _field_varint(3, s))
                    for c, s in links) + _field_bytes(1, data)


def _cid_text(cid: bytes) -> str:
    return str(CID.decode(cid).encode("base32"))


def test_lying_sizes_directories_deep_chains_and_garbage_are_refused() -> None:
    leaf = os.urandom(16)
    leaf_cid = block_cid(leaf, RAW)
    blocks = {leaf_cid: leaf}

    def put(node: bytes) -> bytes:
        cid = block_cid(node, DAG_PB)
        blocks[cid] = node
        return cid

    cases = {
        "parent says": put(_node([(leaf_cid, 17)])),  # a child declared 17 bytes holds 16
        "sum of its parts": put(_node([(leaf_cid, 16)], filesize=99)),
        "not a file": put(_node([(leaf_cid, 16)], kind=1)),  # a directory
        "malformed": put(b"\x0a\xff\xff"),
    }
    deep = leaf_cid
    for _ in range(12):  # each level wraps the one below: a chain deeper than any honest file
        deep = put(_node([(deep, 16)]))
    cases["deeper"] = deep
    for message, cid in cases.items():
        with pytest.raises(StoreError, match=message):
            read_file(_cid_text(cid), blocks.__getitem__, 1 << 20)
    with pytest.raises(StoreError, match="not a CID"):
        read_file("bafy-not-a-cid", blocks.__getitem__, 1 << 20)
    empty = block_cid(b"", RAW)
    blocks[empty] = b""
    wide = put(_node([(empty, 0)] * 174))  # 174 empty children, 174 times over: no bytes, many fetches
    fanned = put(_node([(wide, 0)] * 174))
    with pytest.raises(StoreError, match="more blocks"):
        read_file(_cid_text(fanned), blocks.__getitem__, 1 << 20)


def test_a_manifest_names_its_roots() -> None:
    doc = {"onnx": {"cid": "a", "unixfs": "b", "size": 7}, "files": {"x": {"cid": "c"}},
           "batches": [{"vk": {"cid": "d", "unixfs": "e", "size": -1}}]}
    assert unixfs_roots(doc) == {"a": ("b", 7), "d": ("e", None)}


def test_a_dag_padded_with_links_is_refused_in_bytes_before_it_downloads_much() -> None:
    """A tiny file (no content) whose 500 nodes each carry a 400 KB link name: the block budget alone let a reader
    fetch 200 MB for it; the byte budget stops it within a few MiB."""
    empty = block_cid(b"", RAW)
    blocks = {empty: b""}
    fetched = [0]

    def put(node: bytes) -> bytes:
        cid = block_cid(node, DAG_PB)
        blocks[cid] = node
        return cid

    def get(cid: bytes) -> bytes:
        fetched[0] += len(blocks[cid])
        return blocks[cid]

    name = b"x" * 400_000  # a link's name: 400 KB that are no content of the file
    padded = put(_field_bytes(2, _field_bytes(1, empty) + _field_bytes(2, name) + _field_varint(3, 0))
                 + _field_bytes(1, _field_varint(1, 2) + _field_varint(3, 0) + _field_varint(4, 0)))
    root = put(_node([(padded, 0)] * 500))  # 1,001 blocks: within the block budget, 200 MB to fetch
    with pytest.raises(StoreError, match="more bytes to fetch"):
        read_file(_cid_text(root), get, 8)
    assert fetched[0] < 3 << 20
    with pytest.raises(StoreError, match="unknown or unexpected field 7"):
        read_file(_cid_text(put(_node([(empty, 0)], extra=b"\x38\x01"))), blocks.__getitem__, 1 << 20)
