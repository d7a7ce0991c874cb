"""LocalStore: round trips, idempotence, path-traversal guard, atomic writes, size limit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from proofmarket.core.errors import ArtifactNotFound, InvalidCID, StoreError
from proofmarket.store import ArtifactStore, LocalStore, canonical_json, cid_for_bytes

HELLO_CID = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_is_an_artifact_store(store: LocalStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_put_get_round_trip(store: LocalStore) -> None:
    cid = store.put(b"hello world\n")
    assert cid == HELLO_CID
    assert store.get(cid) == b"hello world\n"
    assert store.has(cid) and store.size(cid) == 12
    assert store.path(cid) == store.root / "blobs" / cid[-2:] / cid
    assert store.path(cid).read_bytes() == b"hello world\n"
    assert store.verify(cid)


def test_empty_blob(store: LocalStore) -> None:
    cid = store.put(b"")
    assert store.get(cid) == b"" and store.size(cid) == 0


def test_put_file_streams_and_matches_put(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    cid = store.put_file(src)
    assert cid == cid_for_bytes(data)
    assert store.get(cid) == data
    assert store.put(data) == cid


def test_put_is_idempotent_and_does_not_rewrite(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = store.put(b"same bytes")
    src = tmp_path / "same"
    src.write_bytes(b"same bytes")
    before = store.path(cid).stat()

    def no_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("an existing blob must not be rewritten")

    monkeypatch.setattr(os, "replace", no_write)
    assert store.put(b"same bytes") == cid
    assert store.put_file(src) == cid
    after = store.path(cid).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert all_files(store.root) == [store.path(cid)]


def test_no_temp_files_left(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"file bytes")
    cids = {store.put(b"a"), store.put(b"b"), store.put_file(src)}
    assert all_files(store.root) == sorted(store.path(c) for c in cids)


def test_failed_replace_leaves_nothing(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StoreError, match="Cannot write artifact"):
        store.put(b"doomed")
    cid = cid_for_bytes(b"doomed")
    assert not store.has(cid)
    assert all_files(store.root) == []
    monkeypatch.undo()
    assert store.put(b"doomed") == cid and store.get(cid) == b"doomed"


def test_failed_write_leaves_nothing(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x" * 100)

    def bad_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", bad_fsync)
    with pytest.raises(StoreError):
        store.put_file(src)
    assert all_files(store.root) == []


@pytest.mark.parametrize(
    "bad",
    ["../x", "/etc/passwd", "bafkrei../..", HELLO_CID.upper(), "", "..", HELLO_CID + "/../../x"],
)
def test_path_traversal_refused(store: LocalStore, bad: str) -> None:
    for op in (store.get, store.path, store.has, store.size, store.verify, store.get_json):
        with pytest.raises(InvalidCID):
            op(bad)
    assert not store.root.exists()


def test_missing_cid_not_found(store: LocalStore) -> None:
    for op in (store.get, store.path, store.size, store.verify):
        with pytest.raises(ArtifactNotFound, match=HELLO_CID) as info:
            op(HELLO_CID)
        assert info.value.details["cid"] == HELLO_CID
    assert not store.has(HELLO_CID)


def test_oversize_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", max_size=10)
    assert store.put(b"0123456789")
    with pytest.raises(StoreError, match="over this store's limit"):
        store.put(b"0123456789A")
    src = tmp_path / "big"
    src.write_bytes(b"x" * 11)
    with pytest.raises(StoreError, match="over this store's limit"):
        store.put_file(src)
    assert len(all_files(store.root)) == 1


def test_a_bare_store_s_limit_is_the_node_s_default(store: LocalStore) -> None:
    from proofmarket.core.settings import Settings

    assert store.max_size == Settings(_env_file=None).limits.max_artifact_bytes  # type: ignore[call-arg]
    measured = json.loads((Path(__file__).parents[2] / "bench" / "slices.json").read_text())["models"]
    largest = max(c["pk_mb"] for r in measured for c in r.get("circuits", []))
    assert store.max_size >= largest * 1e6  # every slice's proving key the slices bench made fits


def test_verify_detects_corruption(store: LocalStore) -> None:
    cid = store.put(b"precious")
    p = store.path(cid)
    p.write_bytes(b"tampered")
    assert store.verify(cid) is False


def test_json_round_trip_is_canonical(store: LocalStore) -> None:
    obj = {"b": [1, 2, {"z": None, "a": True}], "a": "é", "n": 1.5}
    cid = store.put_json(obj)
    assert store.get(cid) == '{"a":"é","b":[1,2,{"a":true,"z":null}],"n":1.5}'.encode()
    assert store.get_json(cid) == obj
    assert store.put_json(dict(reversed(list(obj.items())))) == cid


def test_get_json_on_non_json(store: LocalStore) -> None:
    cid = store.put(b"\xff\xfe not json")
    with pytest.raises(StoreError, match="not UTF-8 JSON"):
        store.get_json(cid)


@pytest.mark.parametrize(
    "bad", [{"x": float("nan")}, {"x": float("inf")}, {1: "int key"}, {"s": {1, 2}}, {"x": b"bytes"}]
)
def test_canonical_json_refuses_non_json(bad: object) -> None:
    with pytest.raises(StoreError, match="(?i)canonical JSON"):
        canonical_json(bad)


def test_canonical_json_bytes() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'
    assert canonical_json("ü") == '"ü"'.encode()


def test_a_workspace_store_keeps_artifacts_up_to_the_configured_size(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """PROOFMARKET_MAX_ARTIFACT_BYTES sets the workspace store's limit (a machine that proves larger keys)."""
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace

    monkeypatch.setenv("PROOFMARKET_MAX_ARTIFACT_BYTES", str(3 * 1024**2))
    ws = Workspace(Settings(home=tmp_path))  # type: ignore[call-arg]
    try:
        ws.store.put(b"x" * 3 * 1024**2)
        with pytest.raises(StoreError, match="over this store's limit"):
            ws.store.put(b"x" * (3 * 1024**2 + 1))
    finally:
        ws.close()
