"""CID computation and validation (vectors computed with ipfs-car 3.1.0 `pack --no-wrap`)."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest

from proofmarket.core.errors import InvalidCID, StoreError
from proofmarket.store import (
    cid_for_bytes,
    cid_for_file,
    cid_from_bytes,
    cid_from_digest,
    cid_to_bytes,
    digest_of,
    validate_cid,
)

EMPTY_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
HELLO_CID = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
ONE_MIB_ZEROS_CID = "bafkreibq4fevl27rgurgnxbp7adh42aqiyd6ouflxhj3gzmcxcxzbh6lla"


@pytest.mark.parametrize(
    ("data", "cid"),
    [(b"", EMPTY_CID), (b"hello world\n", HELLO_CID), (bytes(1 << 20), ONE_MIB_ZEROS_CID)],
)
def test_known_vectors(data: bytes, cid: str, tmp_path: Path) -> None:
    assert cid_for_bytes(data) == cid
    f = tmp_path / "blob"
    f.write_bytes(data)
    assert cid_for_file(f) == cid
    assert validate_cid(cid) == cid


def test_file_hash_spans_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # ~2.2 MiB: three 1 MiB chunks, last one partial
    f = tmp_path / "big"
    f.write_bytes(data)
    assert cid_for_file(f) == cid_for_bytes(data)


def test_cid_for_missing_file_is_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="Cannot read"):
        cid_for_file(tmp_path / "nope")


def test_binary_form_round_trips() -> None:
    raw = cid_to_bytes(HELLO_CID)
    assert raw[:4] == bytes([0x01, 0x55, 0x12, 0x20]) and len(raw) == 36
    assert digest_of(HELLO_CID) == hashlib.sha256(b"hello world\n").digest()
    assert cid_from_bytes(raw) == HELLO_CID
    assert cid_from_digest(hashlib.sha256(b"").digest()) == EMPTY_CID
    with pytest.raises(InvalidCID):
        cid_from_bytes(b"\x01\x70\x12\x20" + raw[4:])  # dag-pb, not raw


def test_agrees_with_multiformats() -> None:
    multiformats = pytest.importorskip("multiformats")
    for data in (b"", b"x", b"proofmarket" * 1000):
        mh = multiformats.multihash.digest(data, "sha2-256")
        assert str(multiformats.CID("base32", 1, "raw", mh)) == cid_for_bytes(data)


BAD_CIDS = [
    "",
    "../x",
    "/etc/passwd",
    "bafkrei../..",
    "bafkrei" + "a" * 50 + "/..",
    HELLO_CID.upper(),
    HELLO_CID[:10] + HELLO_CID[10].upper() + HELLO_CID[11:],
    HELLO_CID + "a",
    HELLO_CID[:-1],
    " " + HELLO_CID,
    HELLO_CID + "\n",
    HELLO_CID[:-1] + "1",  # '1' is not in the base32 alphabet
    HELLO_CID[:-1] + "b",  # non-zero padding bits in the last character
    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CID
    "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB",  # CIDv0
    "bafkrehdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvykuu",  # wrong multihash length bits
    "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk\x00",
]


@pytest.mark.parametrize("bad", BAD_CIDS)
def test_validate_rejects(bad: str) -> None:
    with pytest.raises(InvalidCID, match="not a valid CID"):
        validate_cid(bad)


def test_validate_rejects_non_strings() -> None:
    with pytest.raises(InvalidCID, match="must be a string"):
        validate_cid(HELLO_CID.encode())  # type: ignore[arg-type]


def test_prefix_bits_inside_eighth_char_are_checked() -> None:
    # 'bafkrei' fixes only 30 of the 32 prefix bits; the 8th character holds the last 2 (both 0)
    # and 3 digest bits, so exactly 8 of the 32 base32 letters may follow 'bafkrei'.
    accepted = []
    for c in "abcdefghijklmnopqrstuvwxyz234567":
        with contextlib.suppress(InvalidCID):
            accepted.append(validate_cid("bafkrei" + c + HELLO_CID[8:]))
    assert len(accepted) == 8
    assert all(cid_to_bytes(s)[:4] == bytes([0x01, 0x55, 0x12, 0x20]) for s in accepted)
