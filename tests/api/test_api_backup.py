"""A node's home backed up while it runs (after a call and a posted transfer) restores into a new home that serves
the same model, holds the same proof and the same book, whose check finds nothing; a damaged or foreign archive,
or a home that is not empty, is refused in one sentence."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from api_helpers import compile_mlp, mlp_input
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from proofmarket.api.app import create_app
from proofmarket.cli.main import app as cli
from proofmarket.core.settings import Settings
from proofmarket.db import Database
from proofmarket.db.book import Book, Transfer
from proofmarket.systems.workspace import Workspace

pytestmark = pytest.mark.slow
PAYER, OWNER = "0x" + "aa" * 20, "0x" + "bb" * 20


def _settings(home: Path) -> Settings:
    return Settings(_env_file=None, home=home, prover_workers=1)  # type: ignore[call-arg]


def _cli(*args: str) -> tuple[int, dict]:
    ran = CliRunner().invoke(cli, [*args, "--json"])
    return ran.exit_code, json.loads(ran.stdout) if ran.stdout.strip().startswith("{") else {"output": ran.output}


def test_a_running_nodes_home_restores_into_a_new_home_that_serves_the_same(tmp_path: Path) -> None:
    home, restored = tmp_path / "home", tmp_path / "restored"
    ws = Workspace(_settings(home))
    try:
        model_id = compile_mlp(ws).model_id
    finally:
        ws.close()
    node = create_app(_settings(home))
    node.state.services.catalog.register(model_id, price_atomic=25_000)
    with TestClient(node) as client:
        called = client.post(f"/v1/models/{model_id}/infer", json=mlp_input())
        assert called.status_code == 200, called.text
        bundle_cid, token = called.json()["bundle_cid"], called.json()["access_token"]
        book = Book(node.state.services.db)
        book.post(Transfer.move("x402:backup-test", "capture", "x402", f"wallet:{PAYER}", f"owed:{OWNER}", 25_000,
                                model_id=model_id, payer=PAYER))
        code, taken = _cli("backup", str(tmp_path / "node.tar.gz"), "--home", str(home))  # while it runs
        assert code == 0 and taken["database"] == "sqlite snapshot" and taken["files"] > 5, taken
    node.state.services.close()
    with tarfile.open(tmp_path / "node.tar.gz") as archive:
        names = archive.getnames()
    assert "node.db" in names and "access.key" in names and not any(n.startswith("srs/") for n in names)

    code, done = _cli("restore", str(tmp_path / "node.tar.gz"), "--home", str(restored))
    assert code == 0 and done["files"] == taken["files"], done
    again = create_app(_settings(restored))
    with TestClient(again) as client:
        assert client.get(f"/v1/models/{model_id}").status_code == 200
        # the call's token still opens its proof: the access key came back with the store
        assert client.get(f"/v1/proofs/{bundle_cid}", headers={"X-Job-Token": token}).status_code == 200
        served = client.post(f"/v1/models/{model_id}/infer", json=mlp_input())
        assert served.status_code == 200, served.text
        book = Book(again.state.services.db)
        assert book.check() == [] and book.balance(f"owed:{OWNER}").posted == 25_000
    again.state.services.close()

    code, refused = _cli("restore", str(tmp_path / "node.tar.gz"), "--home", str(restored))  # not empty now
    assert code == 2 and "not empty" in refused["error"]["message"]


def test_a_damaged_or_foreign_archive_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "access.key").write_text("k" * 64)
    Database(f"sqlite:///{home / 'node.db'}").migrate()
    assert _cli("backup", str(tmp_path / "b.tar.gz"), "--home", str(home))[0] == 0
    assert _cli("backup", str(tmp_path / "b.tar.gz"), "--home", str(home))[1]["error"]["code"] == "bad_request"

    with tarfile.open(tmp_path / "b.tar.gz") as archive:
        members = {m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
                   for m in archive.getmembers() if m.isfile()}
    members["access.key"] = b"x" * 64  # changed after the backup
    with tarfile.open(tmp_path / "damaged.tar.gz", "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    code, damaged = _cli("restore", str(tmp_path / "damaged.tar.gz"), "--home", str(tmp_path / "new"))
    assert code == 2 and "access.key does not match its checksum" in damaged["error"]["message"]

    with tarfile.open(tmp_path / "foreign.tar.gz", "w:gz") as archive:
        archive.add(str(home / "access.key"), arcname="../outside.key")
    code, foreign = _cli("restore", str(tmp_path / "foreign.tar.gz"), "--home", str(tmp_path / "new2"))
    assert code == 2 and not (tmp_path / "outside.key").exists()


def test_a_file_written_while_it_is_backed_up_restores_as_it_was_read(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 72: a live home's files change during a backup (the devnet's log, the store). Each file is archived
    and hashed from one read, so a write right after a file went into the archive leaves an archive that restores
    (it hashed a second read before: a write in between made the restore refuse the whole archive)."""
    from proofmarket.node import backup as backups

    home = tmp_path / "home"
    Workspace(_settings(home)).close()  # a home with its database
    log = home / "devnet" / "anvil.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("block 1\n")
    added = tarfile.TarFile.addfile

    def written_meanwhile(archive: tarfile.TarFile, info: tarfile.TarInfo, fileobj: object = None) -> None:
        added(archive, info, fileobj)  # type: ignore[arg-type]
        if info.name == "devnet/anvil.log":
            with log.open("a") as out:
                out.write("block 2\n")  # the node writes on, after the archive took the file

    monkeypatch.setattr(tarfile.TarFile, "addfile", written_meanwhile)
    made = backups.backup(_settings(home), tmp_path / "live.tar.gz")
    monkeypatch.undo()
    done = backups.restore(_settings(tmp_path / "restored"), made.path)
    assert done.files == made.files
    assert (tmp_path / "restored" / "devnet" / "anvil.log").read_text() == "block 1\n"  # as it was read
