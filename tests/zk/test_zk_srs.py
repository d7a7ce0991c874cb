"""SRS handling: dev SRS cached per logrows and labelled; a ceremony SRS file is used by path and hashed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from proofmarket.errors import SRSError
from proofmarket.samples import sample_path
from proofmarket.zk.compiler import CompileOptions
from proofmarket.zk.profile import PrivacyProfile
from proofmarket.zk.prover import EzklProver
from proofmarket.zk.srs import SrsProvider
from proofmarket.zk.tuning import Candidate


def test_dev_srs_is_cached_and_labelled(tmp_path: Path) -> None:
    provider = SrsProvider(tmp_path)
    first = provider.get(8)
    again = provider.get(8)
    assert first.kind == "dev" and first.path == again.path and first.sha256 == again.sha256
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()


def test_missing_ceremony_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SRSError, match="does not exist"):
        SrsProvider(tmp_path, tmp_path / "nope.srs")


def test_too_small_ceremony_file_is_refused(tmp_path: Path) -> None:
    small = SrsProvider(tmp_path / "dev").get(8).path
    with pytest.raises(SRSError, match="too small"):
        SrsProvider(tmp_path, small).get(12)


@pytest.mark.slow
def test_compile_with_a_ceremony_srs_records_its_hash(prover: EzklProver, tmp_path: Path, mlp_input) -> None:
    # stands in for a downloaded ceremony file: a larger SRS serves a smaller circuit
    ceremony = tmp_path / "ceremony-k12.srs"
    shutil.copyfile(SrsProvider(tmp_path / "dev").get(12).path, ceremony)
    options = CompileOptions(profile=PrivacyProfile(), srs=SrsProvider(tmp_path / "cache", ceremony),
                             candidates=[Candidate(256, 3, 7, 4)])
    result = prover.compile(sample_path("mlp"), json.loads(sample_path("mlp", "samples").read_text()), options)
    srs = result.manifest.srs
    assert srs.kind == "ceremony"
    assert srs.sha256 == hashlib.sha256(ceremony.read_bytes()).hexdigest()
    proved = prover.prove(result.model_id, mlp_input)
    assert proved.bundle.model.srs.kind == "ceremony"
    assert prover.verify(proved.bundle).valid
