"""Checked-in contract artifacts match the Solidity sources they were compiled from."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from proofmarket.chain.artifacts import ARTIFACTS_DIR, PROJECT_CONTRACTS, load_artifact, source_hash

ROOT = Path(__file__).resolve().parents[2]
TEST_ARTIFACTS = ROOT / "tests" / "chain" / "artifacts"
SOURCE_DIRS = {"contracts": ARTIFACTS_DIR, "tests/chain/contracts": TEST_ARTIFACTS}
NODE_MODULES = ROOT / "node_modules"
EIP170_LIMIT = 24_576
STALE = "the artifact is stale: run 'make contracts' (node scripts/compile_contracts.js)"


def all_artifacts() -> list[Path]:
    return sorted(ARTIFACTS_DIR.glob("*.json")) + sorted(TEST_ARTIFACTS.glob("*.json"))


def resolve(unit: str) -> Path:
    return NODE_MODULES / unit if unit.startswith("@") else ROOT / unit


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def need_node_modules() -> None:
    if not (NODE_MODULES / "solc").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and node_modules is missing: run npm ci")
        pytest.skip("node_modules is missing: run 'make setup'")


def test_every_project_contract_has_an_artifact() -> None:
    for name in PROJECT_CONTRACTS:
        assert len(load_artifact(name).bytecode) > 100


def test_every_solidity_file_went_into_an_artifact() -> None:
    for folder, out in SOURCE_DIRS.items():
        compiled = {unit for path in out.glob("*.json") for unit in json.loads(path.read_text())["sources"]}
        for sol in sorted((ROOT / folder).glob("*.sol")):
            assert f"{folder}/{sol.name}" in compiled, f"{sol} has no artifact: run 'make contracts'"


@pytest.mark.parametrize("path", all_artifacts(), ids=lambda p: p.stem)
def test_artifact_matches_project_sources(path: Path) -> None:
    data = json.loads(path.read_text())
    assert source_hash(data["sources"]) == data["sourceHash"], f"{path.name} has an inconsistent sourceHash"
    for unit, digest in data["sources"].items():
        if unit.startswith("@"):
            continue
        assert resolve(unit).is_file(), f"{path.name} was compiled from {unit}, which is gone; {STALE}"
        assert sha256_file(resolve(unit)) == digest, f"{unit} changed since {path.name} was compiled; {STALE}"


@pytest.mark.npm
@pytest.mark.parametrize("path", all_artifacts(), ids=lambda p: p.stem)
def test_artifact_matches_installed_openzeppelin(path: Path) -> None:
    need_node_modules()
    for unit, digest in json.loads(path.read_text())["sources"].items():
        if unit.startswith("@"):
            assert sha256_file(resolve(unit)) == digest, f"{unit} in node_modules differs from {path.name}'s; {STALE}"


@pytest.mark.npm
def test_artifacts_were_built_with_the_pinned_solc() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["solc"]
    for path in all_artifacts():
        compiler = json.loads(path.read_text())["compiler"]
        assert compiler.startswith(f"{pinned}+"), f"{path.name} used solc {compiler}; {STALE}"


def test_deployed_code_fits_eip170() -> None:
    for path in all_artifacts():
        size = (len(json.loads(path.read_text())["deployedBytecode"]) - 2) // 2
        assert 0 < size <= EIP170_LIMIT, f"{path.name} is {size} bytes deployed"


def test_the_court_has_room_for_one_more_feature() -> None:
    # the largest contract, its stake histories linked from a library (StakeCheckpoints): at least 2 KB under the limit
    size = (len(load_artifact("AttestationCourt").deployed_bytecode) - 2) // 2
    assert size <= EIP170_LIMIT - 2_048, f"the court is {size} bytes: {EIP170_LIMIT - size} under EIP-170's limit"


@pytest.mark.npm
def test_single_file_mode_compiles_an_external_contract(tmp_path: Path) -> None:
    need_node_modules()
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    source = tmp_path / "Verifier.sol"
    source.write_text((ROOT / "tests/chain/contracts/MockVerifier.sol").read_text())
    out = tmp_path / "out" / "MockVerifier.json"
    cmd = [
        node,
        str(ROOT / "scripts/compile_contracts.js"),
        "--single",
        str(source),
        "--contract",
        "MockVerifier",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    data = json.loads(out.read_text())
    assert data["settings"]["optimizer"] == {"enabled": True, "runs": 1}
    assert data["settings"]["evmVersion"] == "cancun" and len(data["bytecode"]) > 100
    assert data["sources"] == {"Verifier.sol": sha256_file(source)}
    bad = subprocess.run([*cmd[:5], "Nope", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "contract Nope not found" in bad.stderr
