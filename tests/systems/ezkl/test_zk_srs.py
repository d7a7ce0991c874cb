"""SRS handling: dev SRS cached per logrows; an SRS file given by path is used and hashed; the kind of any file
comes from its sha256 against the pinned ceremony hashes, never from how it was passed (issue 8)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from proofmarket.core.errors import DevSrsRefused, SRSError
from proofmarket.samples import sample_path
from proofmarket.sdk.checks import check_srs
from proofmarket.systems.ezkl import srs as srs_module
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.srs import SrsProvider, srs_kind
from proofmarket.systems.ezkl.tuning import Candidate


def test_dev_srs_is_cached_and_labelled(tmp_path: Path) -> None:
    provider = SrsProvider(tmp_path)
    first = provider.get(8)
    again = provider.get(8)
    assert first.kind == "dev" and first.path == again.path and first.sha256 == again.sha256
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()


def test_a_dev_srs_passed_as_a_file_is_recorded_as_dev(tmp_path: Path) -> None:
    dev = tmp_path / "looks-official.srs"
    shutil.copyfile(SrsProvider(tmp_path / "dev").get(8).path, dev)
    assert SrsProvider(tmp_path, dev).get(8).kind == "dev"


def test_only_a_pinned_hash_is_a_ceremony_srs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = SrsProvider(tmp_path).get(8)
    assert srs_kind(dev.sha256) == "dev"
    monkeypatch.setitem(srs_module.CEREMONY_SRS_SHA256, dev.sha256, 8)  # as if it were the ceremony file
    assert srs_kind(dev.sha256.upper()) == "ceremony" and SrsProvider(tmp_path, dev.path).get(8).kind == "ceremony"


def test_the_sdk_accepts_a_dev_srs_only_when_told_and_on_the_devnet() -> None:
    assert "ceremony" in check_srs("ceremony", "m", devnet=False, allow_dev_srs=False, network="eip155:8453")
    assert "devnet" in check_srs("dev", "m", devnet=True, allow_dev_srs=False, network="eip155:31337")
    assert "devnet" in check_srs("dev", "m", devnet=True, allow_dev_srs=False, network=None)
    assert "allowed" in check_srs("dev", "m", devnet=False, allow_dev_srs=True, network="eip155:8453")
    for devnet, network in ((False, None), (False, "eip155:31337"), (True, "eip155:8453")):
        with pytest.raises(DevSrsRefused) as refused:
            check_srs("dev", "m", devnet=devnet, allow_dev_srs=False, network=network)
        assert refused.value.code == "dev_srs_refused" and refused.value.details["check"] == "srs"


def test_missing_ceremony_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SRSError, match="does not exist"):
        SrsProvider(tmp_path, tmp_path / "nope.srs")


def test_too_small_ceremony_file_is_refused(tmp_path: Path) -> None:
    small = SrsProvider(tmp_path / "dev").get(8).path
    with pytest.raises(SRSError, match="too small"):
        SrsProvider(tmp_path, small).get(12)


@pytest.mark.slow
def test_compile_with_a_ceremony_srs_records_its_hash(prover: EzklProver, tmp_path: Path, mlp_input,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # stands in for a downloaded ceremony file (its hash pinned here): a larger SRS serves a smaller circuit
    ceremony = tmp_path / "ceremony-k12.srs"
    shutil.copyfile(SrsProvider(tmp_path / "dev").get(12).path, ceremony)
    monkeypatch.setitem(srs_module.CEREMONY_SRS_SHA256, hashlib.sha256(ceremony.read_bytes()).hexdigest(), 12)
    options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(tmp_path / "cache", ceremony),
                             candidates=[Candidate(256, 3, 7, 4)])
    result = prover.compile(sample_path("mlp"), json.loads(sample_path("mlp", "samples").read_text()), options)
    srs = result.manifest.srs
    assert srs.kind == "ceremony"
    assert srs.sha256 == hashlib.sha256(ceremony.read_bytes()).hexdigest()
    proved = prover.prove(result.model_id, mlp_input)
    assert proved.bundle.model.srs.kind == "ceremony"
    assert prover.verify(proved.bundle).valid
    monkeypatch.delitem(srs_module.CEREMONY_SRS_SHA256, srs.sha256)  # unpinned, the same file is only a dev SRS
    assert prover.verify(proved.bundle).srs_kind == "dev"


def test_pinned_ceremony_hashes_are_the_ones_ezkl_checks() -> None:
    # EZKL refuses a downloaded ceremony file whose sha256 is not in its own table: the pins must be that table
    import ezkl

    assert sorted(srs_module.CEREMONY_SRS_SHA256.values()) == list(range(1, 27))
    binary = b"".join(p.read_bytes() for p in Path(ezkl.__file__).parent.glob("*.so"))
    missing = [h for h in srs_module.CEREMONY_SRS_SHA256 if h.encode() not in binary]
    assert missing == []
