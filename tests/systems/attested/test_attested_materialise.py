"""A validator judges several requests of one model at once: each rebuilds the model directory from the store, and
two threads that shared one temporary name linked over each other's file (a court test failed with
FileExistsError, then SameFileError: the validator's verdict was 'error', not 'cheated')."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from proofmarket.systems.attested.terms import materialise


def test_threads_rebuilding_one_model_directory_at_once_never_collide(tmp_path: Path) -> None:
    blobs = {}
    for i in range(8):
        blob = tmp_path / f"blob{i}"
        blob.write_text(f"file {i}")
        blobs[f"cid{i}"] = blob
    store = SimpleNamespace(path=lambda cid: blobs[cid])
    manifest = SimpleNamespace(files={f"f{i}.json": SimpleNamespace(cid=f"cid{i}") for i in range(8)})
    errors: list[BaseException] = []

    def rebuild(n: int) -> None:
        try:
            for round_ in range(20):
                folder = tmp_path / f"model-{round_}"
                materialise(store, manifest, folder)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 (collected: the test names it)
            errors.append(exc)

    threads = [threading.Thread(target=rebuild, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in (tmp_path / "model-0").iterdir()) == [f"f{i}.json" for i in range(8)]
    assert (tmp_path / "model-7" / "f3.json").read_text() == "file 3"
