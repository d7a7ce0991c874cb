"""verify_code: immutables masked, metadata-only differences told apart, CREATE addresses (no chain needed)."""

from __future__ import annotations

from dataclasses import replace

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.deploy_plan import create_address
from proofmarket.chain.verify_code import DIFFERS, EXTERNAL, MATCH, NO_CODE, compare, masked, metadata_length


def runtime(name: str) -> bytes:
    return bytes.fromhex(load_artifact(name).deployed_bytecode.removeprefix("0x"))


def test_immutables_are_masked_and_only_them() -> None:
    artifact = load_artifact("InferenceMarket")
    assert artifact.immutables  # the build carries solc's immutableReferences
    code = bytearray(runtime("InferenceMarket"))
    for start, length in artifact.immutables:  # what a constructor writes there
        code[start:start + length] = b"\x11" * length
    assert compare("m", "0x1", bytes(code), artifact).status == MATCH
    outside = next(i for i in range(len(code)) if all(not s <= i < s + n for s, n in artifact.immutables))
    code[outside] ^= 0xFF
    check = compare("m", "0x1", bytes(code), artifact)
    assert check.status == DIFFERS and f"first difference at byte {outside} " in check.detail
    assert masked(b"\x01\x02\x03", [(1, 5)]) == b"\x01\x00\x00"


def test_metadata_only_difference_other_code_and_no_code() -> None:
    artifact = load_artifact("ModelRegistry")
    code = runtime("ModelRegistry")
    tail = metadata_length(code)
    assert 40 < tail < 100 and code[-tail] in (0xA1, 0xA2, 0xA3)
    other_metadata = code[:-tail + 10] + bytes(b ^ 0x55 for b in code[-tail + 10:-2]) + code[-2:]
    assert "other metadata" in compare("r", "0x1", other_metadata, artifact).detail
    other = compare("r", "0x1", runtime("ReputationRegistry"), artifact)
    assert other.status == DIFFERS and "bytes on chain" in other.detail
    assert compare("r", "0x1", b"", artifact).status == NO_CODE
    assert compare("usdc", "0x1", b"\x60\x00", None).status == EXTERNAL
    assert not compare("r", "0x1", b"", artifact).ok and compare("usdc", "0x1", b"\x60", None).ok
    assert compare("r", "0x1", code, replace(artifact, immutables=())).status == MATCH


def test_create_address_of_anvil_first_deployer() -> None:
    deployer = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's account 0: well-known addresses
    assert create_address(deployer, 0) == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert create_address(deployer, 1) == "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
