"""Compare a contract's code on chain with the artifact built from this repository.

On-chain runtime code is the artifact's ``deployedBytecode`` with the immutables filled in by the constructor
(solc's ``immutableReferences``, carried in the artifact): those bytes are masked (zeroed) on both sides. The
CBOR metadata tail (solc appends it, its length in the last two bytes) hashes the sources and settings: code
that differs only there is reported as such (same instructions, other metadata).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak

from proofmarket.chain.artifacts import Artifact

MATCH = "match"
DIFFERS = "differs"
NO_CODE = "no code"
EXTERNAL = "external"  # a contract this repository did not build (the profile's USDC): code must exist


def _hex(code: str) -> bytes:
    return bytes.fromhex(code.removeprefix("0x"))


def creation_runtime_hash(w3: Any, creation: str | bytes) -> bytes:
    """keccak of the runtime code ``creation`` code deploys: the creation code run by eth_call (no transaction, no gas
    paid), so any chain can check a contract against the creation code it should have been deployed from."""
    data = creation if isinstance(creation, bytes) else _hex(creation.strip())
    return keccak(bytes(w3.eth.call({"data": data})))


def masked(code: bytes, immutables: Iterable[tuple[int, int]]) -> bytes:
    """``code`` with the immutable ranges zeroed (a range past the end is cut at the end)."""
    out = bytearray(code)
    for start, length in immutables:
        end = min(start + length, len(out))
        if start < end:
            out[start:end] = bytes(end - start)
    return bytes(out)


def runtime_code_hash(artifact: Artifact) -> str:
    """keccak256 of the artifact's runtime code with its immutables masked: the hash a deployment record keeps."""
    return "0x" + keccak(masked(_hex(artifact.deployed_bytecode), artifact.immutables)).hex()


def onchain_code_hash(code: bytes, artifact: Artifact) -> str:
    """keccak256 of on-chain code masked at the artifact's immutables (equal to runtime_code_hash when it matches)."""
    return "0x" + keccak(masked(code, artifact.immutables)).hex()


def metadata_length(code: bytes) -> int:
    """Bytes of solc's CBOR metadata tail (with its 2-byte length), 0 when the code does not end in one."""
    if len(code) < 2:
        return 0
    n = int.from_bytes(code[-2:], "big") + 2
    return n if n <= len(code) and code[-n] in (0xA1, 0xA2, 0xA3) else 0  # a CBOR map of 1-3 entries


@dataclass(frozen=True)
class CodeCheck:
    name: str
    address: str
    status: str  # MATCH, DIFFERS, NO_CODE, EXTERNAL
    detail: str = ""
    code_hash: str = ""  # keccak of the masked on-chain code ("" without code)

    @property
    def ok(self) -> bool:
        return self.status in (MATCH, EXTERNAL)

    def to_json(self) -> dict[str, str | bool]:
        return {"name": self.name, "address": self.address, "status": self.status, "detail": self.detail,
                "codeHash": self.code_hash, "ok": self.ok}


def compare(name: str, address: str, code: bytes, artifact: Artifact | None) -> CodeCheck:
    """How ``code`` (read at ``address``) compares with ``artifact`` (None: an external contract)."""
    if not code:
        return CodeCheck(name, address, NO_CODE, "no contract code at this address")
    if artifact is None:
        return CodeCheck(name, address, EXTERNAL, f"{len(code)} bytes of code (not built here)",
                         "0x" + keccak(code).hex())
    expected = masked(_hex(artifact.deployed_bytecode), artifact.immutables)
    found = masked(code, artifact.immutables)
    code_hash = "0x" + keccak(found).hex()
    if found == expected:
        return CodeCheck(name, address, MATCH, f"{len(code)} bytes, {len(artifact.immutables)} immutables masked",
                         code_hash)
    return CodeCheck(name, address, DIFFERS, _where(found, expected, artifact.name), code_hash)


def _where(found: bytes, expected: bytes, artifact: str) -> str:
    tail_found, tail_expected = metadata_length(found), metadata_length(expected)
    body_found = found[:len(found) - tail_found]
    body_expected = expected[:len(expected) - tail_expected]
    if body_found == body_expected:
        return f"same code as {artifact}, other metadata (sources or compiler settings differ)"
    first = next((i for i, (a, b) in enumerate(zip(body_found, body_expected, strict=False)) if a != b),
                 min(len(body_found), len(body_expected)))
    size = "" if len(found) == len(expected) else f"; {len(found)} bytes on chain, {len(expected)} in {artifact}"
    return f"first difference at byte {first} of {artifact}'s runtime code{size}"
