"""Ceremony SRS files (issue 22 item 6): ``srs fetch`` downloads from a local HTTP server, ``srs import`` takes a
file; both store only a file whose sha256 is the pin of its logrows, by CID, and compile off the devnet uses it or
refuses to make a dev SRS. The real ceremony files are not downloadable here: each test pins the hash of a small
SRS it generated, in a pin table of its own (the production table is left as it is, and refuses that file)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proofmarket.cli.main import app
from proofmarket.core.errors import ArtifactCorrupt, ArtifactNotFound, UsageError
from proofmarket.core.settings import Settings
from proofmarket.samples import sample_path
from proofmarket.store import cid_for_file
from proofmarket.systems.ezkl import ceremony as ceremony_module
from proofmarket.systems.ezkl import ezkl_calls
from proofmarket.systems.ezkl.ceremony import CEREMONY_PINS, CeremonyStore, ceremony_url, size_cap
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import CEREMONY_SRS_SHA256
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

K = 3  # a tiny SRS (1284 bytes) stands in for the ceremony file of logrows 3


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("srs") / "k3.srs"
    ezkl_calls.gen_srs(path, K)
    return path.read_bytes()


@pytest.fixture(scope="module")
def tampered(good: bytes) -> bytes:
    return good[:100] + bytes([good[100] ^ 1]) + good[101:]  # one bit of one point changed


@pytest.fixture(scope="module")
def server(good: bytes, tampered: bytes) -> Iterator[str]:
    files = {"/good": good, "/tampered": tampered, "/huge": good * 4}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def store(tmp_path: Path, good: bytes) -> CeremonyStore:
    # the generated file is pinned here, not in EZKL's compiled-in table: EZKL's own check is left out (see
    # test_ezkls_own_table_checks_the_stored_bytes for it)
    return CeremonyStore(tmp_path / "srs", pins={K: _sha(good), 5: "ab" * 32}, table_check=None)


def _nothing_stored(store: CeremonyStore) -> bool:
    return store.entries() == [] and (not store.files.exists() or list(store.files.iterdir()) == [])


def test_the_production_pins_are_ezkls_table_and_refuse_a_generated_file(tmp_path: Path, good: bytes) -> None:
    assert dict(CEREMONY_PINS) == {k: h for h, k in CEREMONY_SRS_SHA256.items()} and sorted(CEREMONY_PINS) == list(
        range(1, 27))
    assert ceremony_url("https://example.org/", 7) == "https://example.org/perpetual-powers-of-tau-raw-7"
    assert size_cap(K) >= len(good)  # the cap fits a real file of that logrows
    path = tmp_path / "k3.srs"
    path.write_bytes(good)
    production = CeremonyStore(tmp_path / "srs")
    with pytest.raises(ArtifactCorrupt, match=f"expected sha256 {CEREMONY_PINS[K]}, got {_sha(good)}"):
        production.import_file(path, K)
    with pytest.raises(ArtifactCorrupt, match="not the pinned ceremony SRS of any logrows"):
        production.import_file(path)
    assert _nothing_stored(production)


def test_ezkls_own_table_checks_the_stored_bytes(tmp_path: Path, server: str, good: bytes) -> None:
    """A file that matches a pin is also checked by EZKL itself (``get_srs`` on the file, offline: its compiled-in
    table): a file EZKL writes the way it writes a downloaded ceremony file, but not the ceremony's, is refused by
    EZKL and nothing is stored; the check sees exactly the bytes that would be stored, under its logrows."""
    pinned = CeremonyStore(tmp_path / "srs", pins={K: _sha(good)})  # our pin accepts it, EZKL's table does not
    with pytest.raises(ArtifactCorrupt, match="EZKL's own check refused") as refused:
        pinned.fetch(K, f"{server}/good")
    assert "hash does not match" in refused.value.message and _nothing_stored(pinned)
    seen: list[tuple[bytes, int]] = []
    watched = CeremonyStore(tmp_path / "srs2", pins={K: _sha(good)},
                            table_check=lambda path, k: seen.append((path.read_bytes(), k)))
    entry = watched.fetch(K, f"{server}/good")
    assert seen == [(good, K)] and entry.path.read_bytes() == good


def test_fetch_stores_the_file_by_cid_and_lists_it(store: CeremonyStore, server: str, good: bytes) -> None:
    seen: list[tuple[int, int | None]] = []
    entry = store.fetch(K, f"{server}/good", progress=lambda done, total: seen.append((done, total)))
    assert entry.path == store.files / entry.cid and entry.path.read_bytes() == good
    assert entry.cid == cid_for_file(entry.path) and entry.sha256 == _sha(good) and entry.size == len(good)
    assert seen[-1] == (len(good), len(good))
    assert store.entries() == [entry] and json.loads(store.index_path.read_text())[str(K)]["cid"] == entry.cid
    assert store.for_logrows(K - 1) == entry and store.for_logrows(K + 1) is None  # larger serves smaller
    assert [p.name for p in store.files.iterdir()] == [entry.cid]  # no temporary file left


def test_a_tampered_download_is_refused_and_nothing_stored(store: CeremonyStore, server: str, good: bytes,
                                                           tampered: bytes) -> None:
    with pytest.raises(ArtifactCorrupt) as refused:
        store.fetch(K, f"{server}/tampered")
    assert f"expected sha256 {_sha(good)}, got {_sha(tampered)}" in refused.value.message
    assert refused.value.exit_code == 2 and _nothing_stored(store)
    with pytest.raises(ArtifactCorrupt, match="expected sha256 " + "ab" * 32):  # the right file under another pin
        store.fetch(5, f"{server}/good")
    with pytest.raises(ArtifactCorrupt, match="more than a ceremony SRS"):
        store.fetch(K, f"{server}/huge")
    assert _nothing_stored(store)


def test_an_unreachable_or_missing_file_is_one_sentence(store: CeremonyStore, server: str) -> None:
    with pytest.raises(ArtifactNotFound, match="HTTP 404") as missing:
        store.fetch(K, f"{server}/nope")
    assert missing.value.exit_code == 2
    with pytest.raises(ArtifactNotFound, match="could not be downloaded .*srs import FILE --logrows 3"):
        store.fetch(K, "http://127.0.0.1:1/perpetual-powers-of-tau-raw-3")
    with pytest.raises(UsageError, match="no ceremony SRS is pinned for logrows 9"):
        store.fetch(9, f"{server}/good")
    with pytest.raises(UsageError, match="http"):
        store.fetch(K, "file:///etc/passwd")
    assert _nothing_stored(store)


def test_import_checks_the_same_pin(store: CeremonyStore, tmp_path: Path, good: bytes, tampered: bytes) -> None:
    bad = tmp_path / "bad.srs"
    bad.write_bytes(tampered)
    with pytest.raises(ArtifactCorrupt, match=f"got {_sha(tampered)}"):
        store.import_file(bad, K)
    with pytest.raises(ArtifactCorrupt, match="not the pinned ceremony SRS of any logrows"):
        store.import_file(bad)
    assert _nothing_stored(store)
    ok = tmp_path / "ok.srs"
    ok.write_bytes(good)
    entry = store.import_file(ok)  # the logrows is the one whose pin the hash is
    assert entry.logrows == K and entry.path.read_bytes() == good and store.entries() == [entry]
    assert ok.is_file()  # the file given is copied, not moved


def _cli(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_the_cli_fetches_lists_and_refuses(tmp_path: Path, server: str, good: bytes, tampered: bytes,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ceremony_module.CEREMONY_PINS, K, _sha(good))
    home = str(tmp_path / "home")
    code, doc = _cli("srs", "fetch", "--logrows", str(K), "--url", f"{server}/tampered", "--home", home)
    assert code == 2 and doc["error"]["code"] == "artifact_corrupt"  # type: ignore[index]
    assert _cli("srs", "list", "--home", home) == (0, {"ok": True, "srs": []})
    code, doc = _cli("srs", "fetch", "--logrows", str(K), "--url", f"{server}/good", "--home", home)
    assert code == 2 and "EZKL's own check refused" in doc["error"]["message"]  # type: ignore[index]
    monkeypatch.setattr(ceremony_module, "ezkl_table_check", lambda path, k: None)  # as if EZKL's table had it
    code, doc = _cli("srs", "fetch", "--logrows", str(K), "--url", f"{server}/good", "--home", home)
    assert code == 0 and doc["sha256"] == _sha(good) and doc["logrows"] == K
    code, listed = _cli("srs", "list", "--home", home)
    assert code == 0 and listed["srs"] == [{k: v for k, v in doc.items() if k != "ok"}]


def test_the_cli_refuses_a_tampered_import_with_the_real_pins(tmp_path: Path, tampered: bytes) -> None:
    bad = tmp_path / "perpetual-powers-of-tau-raw-3"
    bad.write_bytes(tampered)
    home = tmp_path / "home"
    res = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "srs", "import", str(bad), "--logrows", "3",
                          "--home", str(home)], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2, res.stderr
    line = " ".join(res.stderr.split())
    assert f"expected sha256 {CEREMONY_PINS[3]}, got {_sha(tampered)}" in line and "nothing stored" in line
    assert not (home / "srs" / "ceremony.json").exists()


def test_compile_off_the_devnet_refuses_to_make_a_dev_srs(tmp_path: Path) -> None:
    ws = Workspace(Settings(home=tmp_path, chain="base-sepolia", rpc_url=None))
    with pytest.raises(ArtifactNotFound, match=r"chain base-sepolia does not allow a dev SRS.*proofmarket srs fetch "
                                               r"--logrows 7"):
        ws.srs_provider().get(7)
    samples = json.loads(sample_path("mlp", "samples").read_text())
    with pytest.raises(ArtifactNotFound, match="proofmarket srs fetch --logrows N"):  # before any tuning
        ws.compile(sample_path("mlp"), samples, profile=PrivacyProfile())
    assert not (tmp_path / "srs").exists() or not list((tmp_path / "srs").glob("dev-*"))
    devnet = Workspace(Settings(home=tmp_path / "dev", chain="devnet", rpc_url=None)).srs_provider().get(K)
    assert devnet.kind == "dev" and devnet.path.name == f"dev-k{K}.srs"  # the devnet keeps making one


def test_a_stored_file_that_no_longer_hashes_to_its_cid_is_not_used(tmp_path: Path, good: bytes) -> None:
    ws = Workspace(Settings(home=tmp_path, chain="base-sepolia", rpc_url=None))
    ok = tmp_path / "ok.srs"
    ok.write_bytes(good)
    entry = CeremonyStore(ws.settings.srs_dir, pins={K: _sha(good)}, table_check=None).import_file(ok, K)
    assert ws.srs_provider().get(K - 1).path == entry.path
    entry.path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # a changed last byte (a fixed value may be its own)
    with pytest.raises(ArtifactCorrupt, match="no longer hashes"):
        ws.srs_provider().get(K)


@pytest.mark.slow
def test_compile_off_the_devnet_uses_the_imported_srs(tmp_path: Path) -> None:
    ws = Workspace(Settings(home=tmp_path, chain="base-sepolia", rpc_url=None), inline_prover=True)
    generated = tmp_path / "k12.srs"
    ezkl_calls.gen_srs(generated, 12)
    entry = CeremonyStore(ws.settings.srs_dir, pins={12: _sha(generated.read_bytes())},
                          table_check=None).import_file(generated, 12)
    srs = ws.srs_provider()
    srs.check_available()
    options = CompileOptions(profile=PrivacyProfile(), srs=srs, candidates=[Candidate(256, 3, 7, 4)])
    try:
        result = ws.prover.compile(sample_path("mlp"), json.loads(sample_path("mlp", "samples").read_text()), options)
        manifest = result.manifest
        assert manifest.logrows < 12 and manifest.srs.sha256 == entry.sha256  # the larger file serves it
        assert manifest.srs.kind == "dev"  # the kind is still the production table's: this file is not pinned there
        assert not list(ws.settings.srs_dir.glob("dev-*"))  # no dev SRS made
        proved = ws.prove(result.model_id, json.loads(sample_path("mlp", "input").read_text()))
        assert ws.prover.verify(proved.bundle).valid
    finally:
        ws.close()
