"""Independent check with npm `ipfs-car` (3.1.0): its CIDs equal ours, and it reads our CAR files.

ipfs-car packs files with raw leaves and a fixed 1 MiB chunker, so a file of at most 1 MiB packs
to a single raw block whose CID is exactly ``cid_for_file``; a larger file gets a UnixFS (dag-pb)
root instead. It has no flag to change the chunk size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from proofmarket.store import LocalStore, cid_for_bytes, cid_for_file, export_car, import_car, read_car

pytestmark = pytest.mark.npm

REPO_ROOT = Path(__file__).resolve().parents[2]
IPFS_CAR = REPO_ROOT / "node_modules" / ".bin" / "ipfs-car"


@pytest.fixture(scope="module")
def ipfs_car() -> Path:
    missing = None
    if not IPFS_CAR.exists():
        missing = f"{IPFS_CAR} is missing (install the npm tools: `npm ci` in the repo root)"
    elif shutil.which("node") is None:
        missing = "node is not on PATH; ipfs-car needs it"
    if missing:
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(missing)
        pytest.skip(missing)
    return IPFS_CAR


def run(tool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(tool), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    return proc


def ok(tool: Path, *args: str | Path) -> list[str]:
    proc = run(tool, *args)
    assert proc.returncode == 0, f"ipfs-car {args} failed: {proc.stderr}"
    return proc.stdout.split()


def pack(tool: Path, src: Path, out: Path) -> str:
    # With --output, ipfs-car prints the root CID on stdout and rewrites the header's roots
    # in place (without --output it writes a CAR with no roots and prints the CID on stderr).
    (root,) = ok(tool, "pack", src, "--no-wrap", "--output", out)
    return root


@pytest.mark.parametrize("size", [0, 12, 100_000, 1 << 20])
def test_pack_root_equals_cid_for_file(ipfs_car: Path, tmp_path: Path, size: int) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(size))
    root = pack(ipfs_car, src, tmp_path / "blob.car")
    assert root.startswith("bafkrei")
    assert root == cid_for_file(src)


def test_pack_above_one_mib_is_unixfs_not_raw(ipfs_car: Path, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(bytes((1 << 20) + 1))
    root = pack(ipfs_car, src, tmp_path / "big.car")
    assert root.startswith("bafybei")
    assert root != cid_for_file(src)


def test_ipfs_car_reads_our_car(ipfs_car: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    blobs = [b"one", b"hello world\n", os.urandom(3 << 20)]
    cids = [store.put(b) for b in blobs]
    car = export_car(store, cids, tmp_path / "ours.car")
    assert ok(ipfs_car, "roots", car) == cids
    assert ok(ipfs_car, "blocks", car) == cids  # `blocks` rehashes every block by default
    assert ok(ipfs_car, "ls", car, "--root", cids[1], "--verbose") == [cids[1], "12", "."]
    for cid, data in zip(cids, blobs, strict=True):
        out = tmp_path / f"unpacked-{cid}"
        ok(ipfs_car, "unpack", car, "--root", cid, "--output", out)
        assert out.read_bytes() == data


def test_ipfs_car_rejects_our_car_when_tampered(ipfs_car: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    car = export_car(store, [store.put(b"hello world\n")], tmp_path / "ours.car")
    data = bytearray(car.read_bytes())
    data[-1] ^= 1
    car.write_bytes(bytes(data))
    assert run(ipfs_car, "blocks", car).returncode != 0


def test_read_and_import_ipfs_car_output(ipfs_car: Path, tmp_path: Path) -> None:
    data = os.urandom(5000)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    root = pack(ipfs_car, src, tmp_path / "blob.car")
    assert read_car(tmp_path / "blob.car") == ([root], [(root, data)])
    store = LocalStore(tmp_path / "store")
    assert import_car(store, tmp_path / "blob.car") == [cid_for_bytes(data)]
    assert store.get(root) == data
