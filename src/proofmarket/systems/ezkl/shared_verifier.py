"""A model's place on EZKL's reusable verifier: the verifier every circuit shares, and this model's VKA for it.

EZKL 23 renders a reusable Halo2 verifier (``create_evm_verifier(..., reusable=True)``: the same Solidity for every
circuit) and a per-model verification-key artifact (``create_evm_vka``: a u64 little-endian word count, then the
32-byte words). The verifier checks a proof given the VKA's words, which must have been registered on it
(``registerVka``); the words' keccak256 is the VKA's digest. A listing points at a ``SharedVerifier`` clone pinning
(reusable verifier, digest) (contracts/SharedVerifier.sol); the proof it takes is abi.encode(words, EZKL proof).

Compile renders both, checks on the local EVM that the clone accepts the self-check proof, and says what each way
costs: the model's own verifier is deployed per listing (~3M gas) and is cheaper per verification; the shared one
costs a listing only a VKA registration and a clone, and each verification pays the VKA as calldata.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from proofmarket.core.errors import ProofMarketError, ProvingError, VerificationFailed
from proofmarket.store import LocalStore
from proofmarket.systems.documents import put_artifact
from proofmarket.systems.ezkl import ezkl_calls, solidity
from proofmarket.systems.ezkl.evm_check import EvmCheck, LocalEvm
from proofmarket.systems.ezkl.manifest import ModelManifest, SharedVerifierRef

REUSABLE_CONTRACT = "Halo2VerifierReusable"
VKA_DECIMALS = 18  # the rescaling EZKL's own verify_evm expects; part of the VKA (so of its digest)
REUSABLE_VERIFY = "verifyProof(bytes,uint256[],bytes32[])"
_VKA_SCRIPT = """import asyncio, sys, ezkl
async def main():
    return await ezkl.create_evm_vka(*sys.argv[1:5], int(sys.argv[5]))
asyncio.run(main())
"""

Progress = Callable[[str], None]


def vka_words(data: bytes) -> list[bytes]:
    """The VKA file's words (ValueError when it is not a VKA)."""
    if len(data) < 8:
        raise ValueError("a VKA starts with its word count")
    count = int.from_bytes(data[:8], "little")
    if len(data) != 8 + 32 * count:
        raise ValueError(f"a VKA of {count} words is {8 + 32 * count} bytes, not {len(data)}")
    return [data[8 + 32 * i: 8 + 32 * (i + 1)] for i in range(count)]


def vka_digest(words: list[bytes]) -> str:
    return "0x" + keccak(b"".join(words)).hex()


def shared_proof(words: list[bytes], proof: bytes) -> bytes:
    """The ``proof`` a SharedVerifier clone takes: abi.encode(bytes32[] vka, bytes ezklProof)."""
    return encode(["bytes32[]", "bytes"], [words, proof])


def create_vka(vk: Path, settings: Path, srs: Path, out: Path) -> list[bytes]:
    """EZKL's VKA of the circuit, in a child process (EZKL's binding can abort the interpreter on exit after it)."""
    try:
        proc = subprocess.run([sys.executable, "-c", _VKA_SCRIPT, str(vk), str(settings), str(out), str(srs),
                               str(VKA_DECIMALS)], capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ProvingError("writing the verification-key artifact took over 10 minutes") from exc
    if not out.is_file():
        raise ProvingError(f"writing the verification-key artifact failed: {proc.stderr.strip()[-300:]}")
    try:
        return vka_words(out.read_bytes())
    except ValueError as exc:
        raise ProvingError(f"EZKL wrote an unreadable verification-key artifact ({exc})") from exc


def check_vka(store: LocalStore, manifest: ModelManifest) -> None:
    """The manifest's VKA is the one its vk, settings and SRS give (EZKL renders it again, in a temporary folder),
    and its digest is the one the manifest names; VerificationFailed otherwise."""
    shared = manifest.shared_verifier
    if shared is None:
        raise VerificationFailed("the manifest names no shared verifier")
    stored = store.get(shared.vka.cid)
    with tempfile.TemporaryDirectory(prefix="proofmarket-vka-") as tmp:
        again = create_vka(store.path(manifest.vk.cid), store.path(manifest.settings.cid), store.path(manifest.srs.cid),
                           Path(tmp) / "vka.bin")
    if b"".join(again) != b"".join(vka_words(stored)) or vka_digest(again) != shared.vka_digest:
        raise VerificationFailed("the manifest's verification-key artifact is not the one its verifying key gives")


def build(work: Path, vk: Path, settings: Path, srs: Path, proof: Path, evm: LocalEvm, store: LocalStore,
          own_gas: int | None, progress: Progress) -> SharedVerifierRef | None:
    """The model's reusable verifier and VKA, checked on ``evm`` with the self-check ``proof``; None (said) when EZKL
    cannot render them or the clone refuses the proof: the model is then listed with its own verifier only."""
    rendered = _rendered(work, vk, settings, srs, proof, evm)
    if isinstance(rendered, str):
        progress(f"shared verifier: {rendered}; listings deploy the model's own verifier")
        return None
    built, words, check = rendered
    progress(_costs(own_gas, check.gas))
    return SharedVerifierRef(
        source=put_artifact(store, built.sol), abi=put_artifact(store, built.abi),
        bytecode=put_artifact(store, built.bytecode), runtime_keccak="0x" + keccak(
            bytes.fromhex(built.compiled.runtime.removeprefix("0x"))).hex(),
        compiler=built.compiled.compiler, deployed_size=built.compiled.deployed_size,
        vka=put_artifact(store, work / "vka.bin"), vka_digest=vka_digest(words))


def refusal(work: Path, vk: Path, settings: Path, srs: Path, proof: Path, evm: LocalEvm) -> str | None:
    """Why a SharedVerifier clone cannot serve this circuit (EZKL renders no reusable verifier or VKA for it, or the
    clone refuses its self-check ``proof``); None when it can, or when no local EVM says either way."""
    rendered = _rendered(work, vk, settings, srs, proof, evm)
    return rendered if isinstance(rendered, str) else None


def _rendered(work: Path, vk: Path, settings: Path, srs: Path, proof: Path, evm: LocalEvm
              ) -> tuple[solidity.BuiltVerifier, list[bytes], EvmCheck] | str:
    """The reusable verifier and the VKA, with the clone's check of ``proof``; or, in words, why not."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        built = solidity.build_verifier(work, vk, settings, srs, reusable=True, contract=REUSABLE_CONTRACT)
        words = create_vka(vk, settings, srs, work / "vka.bin")
    except ProofMarketError as exc:
        return f"not available ({exc.message})"
    calldata = ezkl_calls.encode_evm_calldata(proof, work / "calldata.bin")
    check = _check(evm, built.compiled, words, calldata)
    if check.accepted is False:
        return f"refuses the self-check proof ({check.note})"
    return built, words, check


def _check(evm: LocalEvm, compiled: solidity.CompiledVerifier, words: list[bytes], calldata: bytes) -> EvmCheck:
    """Deploy the reusable verifier and a SharedVerifier clone pinning the VKA, register the VKA, and verify the
    self-check proof through the clone, as the market will."""
    from proofmarket.chain.artifacts import load_artifact

    if evm.w3() is None:
        return EvmCheck(None, None, f"not checked on an EVM: {evm.unavailable}")
    reusable = evm.deploy(compiled.bytecode)
    implementation = evm.deploy(load_artifact("SharedVerifier").bytecode)
    if reusable is None or implementation is None:
        return EvmCheck(False, None, "the reusable verifier could not be deployed")
    evm.send(reusable, _selector("registerVka(bytes32[])") + encode(["bytes32[]"], [words]))
    digest = bytes.fromhex(vka_digest(words)[2:])
    args = encode(["address", "bytes32"], [reusable, digest])
    evm.send(implementation, _selector("clone(address,bytes32)") + args)
    clone = evm.w3().eth.call({"to": implementation, "data": "0x" + (
        _selector("verifierFor(address,bytes32)") + args).hex()})
    (address,) = decode(["address"], bytes(clone))
    proof, instances = decode(["bytes", "uint256[]"], calldata[4:])
    data = _selector("verifyProof(bytes,uint256[])") + encode(["bytes", "uint256[]"],
                                                               [shared_proof(words, proof), instances])
    return evm.verify_call(to_checksum_address(address), data)


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def _costs(own_gas: int | None, shared_gas: int | None) -> str:
    if shared_gas and not own_gas:  # its own verifier over EIP-170's size (or not measured): the clone alone
        return f"verification on chain: through a SharedVerifier clone, {shared_gas:,} gas per call"
    if not own_gas or not shared_gas:
        return "shared verifier: rendered (gas not measured here)"
    extra = shared_gas - own_gas
    return (f"verification on chain: the model's own verifier {own_gas:,} gas per call (deployed per listing, ~3M "
            f"gas); the shared verifier {shared_gas:,} gas per call (+{extra:,}: the VKA travels as calldata), and a "
            "listing on it registers only the VKA: cheaper for the owner, dearer for each consumer ('proofmarket "
            "model register --verifier own|shared')")
