"""CARv1 export / read / import, checked byte-for-byte against files ipfs-car 3.1.0 wrote."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from proofmarket.core.errors import ArtifactNotFound, InvalidCID, StoreError
from proofmarket.store import LocalStore, cid_for_bytes, export_car, import_car, read_car
from proofmarket.store._codec import CIDLink, dag_cbor_decode, dag_cbor_encode, encode_varint

# `ipfs-car pack hello --no-wrap --output hello.car` for a file holding b"hello world\n".
IPFS_CAR_HELLO = bytes.fromhex(
    "3aa265726f6f747381d82a58250001551220a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a1"
    "92a4476776657273696f6e013001551220a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192"
    "a44768656c6c6f20776f726c640a"
)
HELLO_CID = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_export_matches_ipfs_car_bytes(store: LocalStore, tmp_path: Path) -> None:
    cid = store.put(b"hello world\n")
    out = export_car(store, [cid], tmp_path / "hello.car")
    assert out.read_bytes() == IPFS_CAR_HELLO


def test_read_ipfs_car_bytes(tmp_path: Path) -> None:
    p = tmp_path / "hello.car"
    p.write_bytes(IPFS_CAR_HELLO)
    assert read_car(p) == ([HELLO_CID], [(HELLO_CID, b"hello world\n")])


def test_round_trip_many(store: LocalStore, tmp_path: Path) -> None:
    blobs = [b"", b"a", os.urandom(70_000), b"hello world\n"]
    cids = [store.put(b) for b in blobs]
    out = export_car(store, cids + cids[:2], tmp_path / "x.car", roots=[cids[3]])
    roots, blocks = read_car(out)
    assert roots == [cids[3]]
    assert blocks == list(zip(cids, blobs, strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "x.car"]  # no temp file left

    other = LocalStore(tmp_path / "other")
    assert import_car(other, out) == cids
    assert [other.get(c) for c in cids] == blobs


def test_default_roots_are_all_blocks(store: LocalStore, tmp_path: Path) -> None:
    cids = [store.put(b"one"), store.put(b"two")]
    assert read_car(export_car(store, cids, tmp_path / "x.car"))[0] == cids
    assert read_car(export_car(store, cids, tmp_path / "y.car", roots=[]))[0] == []


def test_export_refuses_bad_and_missing(store: LocalStore, tmp_path: Path) -> None:
    out = tmp_path / "x.car"
    with pytest.raises(InvalidCID):
        export_car(store, ["../etc/passwd"], out)
    with pytest.raises(InvalidCID):
        export_car(store, [], out, roots=["nope"])
    with pytest.raises(ArtifactNotFound):
        export_car(store, [HELLO_CID], out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_corrupted_blob(store: LocalStore, tmp_path: Path) -> None:
    cid = store.put(b"precious")
    store.path(cid).write_bytes(b"tampered")
    with pytest.raises(StoreError, match="corrupted"):
        export_car(store, [cid], tmp_path / "x.car")
    assert not (tmp_path / "x.car").exists()


def test_read_refuses_tampered_block(tmp_path: Path) -> None:
    p = tmp_path / "bad.car"
    p.write_bytes(IPFS_CAR_HELLO[:-1] + b"!")
    with pytest.raises(StoreError, match="does not match its CID"):
        read_car(p)
    assert read_car(p, verify=False)[1][0][1] == b"hello world!"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        IPFS_CAR_HELLO[:30],  # truncated header
        IPFS_CAR_HELLO[:-3],  # truncated block
        b"\x0b\xa1gversion\x02",  # CARv2 pragma
        encode_varint(3) + dag_cbor_encode({"x": 1})[:3],
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # runaway varint
        b"\x80\x00",  # a varint that is not minimally encoded
        b"\x80",  # the data ends inside a varint
    ],
)
def test_read_refuses_malformed(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "bad.car"
    p.write_bytes(data)
    with pytest.raises(StoreError):
        read_car(p)


def test_import_refuses_non_raw_blocks(store: LocalStore, tmp_path: Path) -> None:
    data = b"\x0a\x02\x08\x01"  # any bytes, addressed as dag-pb (0x70)
    raw_cid = b"\x01\x70\x12\x20" + hashlib.sha256(data).digest()
    header = dag_cbor_encode({"roots": [CIDLink(raw_cid)], "version": 1})
    block = raw_cid + data
    p = tmp_path / "dagpb.car"
    p.write_bytes(encode_varint(len(header)) + header + encode_varint(len(block)) + block)
    roots, blocks = read_car(p)
    assert roots[0].startswith("bafybei") and blocks[0][1] == data
    with pytest.raises(StoreError, match="only raw blocks import"):
        import_car(store, p)
    assert not store.root.exists()


def test_dag_cbor_map_key_order() -> None:
    # DAG-CBOR: shorter keys first, then bytewise.
    enc = dag_cbor_encode({"version": 1, "roots": [], "bb": 2, "a": -3, "ab": "x"})
    assert list(dag_cbor_decode(enc)) == ["a", "ab", "bb", "roots", "version"]  # type: ignore[arg-type]
    assert dag_cbor_decode(dag_cbor_encode([0, 23, 24, 255, 256, 65536, 2**32, -1, -500])) == [
        0,
        23,
        24,
        255,
        256,
        65536,
        2**32,
        -1,
        -500,
    ]
    assert dag_cbor_encode(24) == b"\x18\x18" and dag_cbor_encode(-25) == b"\x38\x18"


def test_cid_for_bytes_is_block_cid(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(1000)
    out = export_car(store, [store.put(data)], tmp_path / "x.car")
    assert read_car(out)[1] == [(cid_for_bytes(data), data)]
