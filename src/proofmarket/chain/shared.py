"""Listings on EZKL's reusable verifier (contracts/SharedVerifier.sol): the factory of the market deployment, its
clones (one per VKA digest, pinning the reusable verifier and the digest in their code), and the reusable verifier's
VKA registrations."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from proofmarket.chain.client import TxResult
from proofmarket.chain.contracts import BoundContract
from proofmarket.chain.types import ZERO_ADDRESS

# OpenZeppelin Clones.cloneDeterministicWithImmutableArgs: the runtime code is this prefix, the implementation,
# this suffix, then the arguments (here abi.encode(reusable verifier, VKA digest))
CLONE_PREFIX = bytes.fromhex("363d3d373d3d3d363d73")
CLONE_SUFFIX = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
_CLONE_ARGS_AT = len(CLONE_PREFIX) + 20 + len(CLONE_SUFFIX)
VKA_REGISTERED = keccak(text="VkaRegistered(address,bytes32,bytes32[])")
_REGISTER_VKA_ABI = [{"type": "function", "name": "registerVka", "stateMutability": "nonpayable",
                      "inputs": [{"name": "vka", "type": "bytes32[]"}],
                      "outputs": [{"name": "vka_digest", "type": "bytes32"}]}]


def clone_code(implementation: str, reusable: str, digest: bytes) -> bytes:
    """The deployed code of the SharedVerifier clone pinning (``reusable``, ``digest``)."""
    return (CLONE_PREFIX + bytes.fromhex(implementation.removeprefix("0x")) + CLONE_SUFFIX
            + encode(["address", "bytes32"], [reusable, digest]))


def parse_clone(code: bytes) -> tuple[str, str, bytes] | None:
    """(implementation, reusable verifier, VKA digest) of a SharedVerifier clone's code; None for any other code."""
    if len(code) != _CLONE_ARGS_AT + 64 or not code.startswith(CLONE_PREFIX):
        return None
    implementation = code[len(CLONE_PREFIX):len(CLONE_PREFIX) + 20]
    suffix, padding = code[len(CLONE_PREFIX) + 20:_CLONE_ARGS_AT], code[_CLONE_ARGS_AT:_CLONE_ARGS_AT + 12]
    if suffix != CLONE_SUFFIX or padding != bytes(12):
        return None
    reusable = code[_CLONE_ARGS_AT + 12:_CLONE_ARGS_AT + 32]
    return (to_checksum_address(implementation), to_checksum_address(reusable), code[_CLONE_ARGS_AT + 32:])


class SharedVerifierFactory(BoundContract):
    """The deployment's SharedVerifier implementation: names reusable verifiers by code hash and makes clones."""

    artifact_name = "SharedVerifier"

    def reusable_of(self, runtime_keccak: bytes) -> str | None:
        found = str(self._call("reusableOf", runtime_keccak))
        return None if found == ZERO_ADDRESS else found

    def add_reusable(self, verifier: str, sender: LocalAccount) -> TxResult:
        return self._send("addReusable", sender, to_checksum_address(verifier))

    def verifier_for(self, reusable: str, digest: bytes) -> str:
        return str(self._call("verifierFor", to_checksum_address(reusable), digest))

    def clone(self, reusable: str, digest: bytes, sender: LocalAccount) -> TxResult:
        return self._send("clone", sender, to_checksum_address(reusable), digest)

    def vka_registered(self, reusable: str, digest: bytes) -> bool:
        """Whether the VKA of ``digest`` was registered on ``reusable`` (its VkaRegistered log)."""
        logs = self.client.w3.eth.get_logs({"address": to_checksum_address(reusable), "fromBlock": 0,
                                            "topics": ["0x" + VKA_REGISTERED.hex(), None, "0x" + digest.hex()]})
        return bool(logs)

    def register_vka(self, reusable: str, words: list[bytes], sender: LocalAccount) -> TxResult:
        contract = self.client.contract(to_checksum_address(reusable), _REGISTER_VKA_ABI)
        return self.client.transact(contract.functions.registerVka(words), sender)
