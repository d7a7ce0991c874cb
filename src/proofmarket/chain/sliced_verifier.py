"""A sliced model's one verifier on chain (``contracts/SlicedVerifier.sol``): deployed over its slices' own EZKL
verifiers, it checks a call's every slice proof and link in one ``verifyProof(proof, instances)``, with the call's
instances laid out as one circuit's (the first slice's inputs, then the last slice's outputs): what the market binds
to a request and pays on.

    deploy     the SlicedVerifier over the slices' deployed verifiers (``onchain/sliced.py`` deploys those first)
    evm_args   a sliced bundle as that call: proof = abi.encode(bytes[] proofs, uint256[][] sliceInstances,
               bytes32[][] vkas), a slice on a SharedVerifier clone with its VKA (the SlicedVerifier sends it the
               proof behind it: the links are compared on the proofs themselves)
    check      ``eth_call`` of ``verifyProof`` with its gas: True only when the chain says so
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eth_abi.abi import encode

from proofmarket.chain.artifacts import load_artifact

if TYPE_CHECKING:  # a verifier of a sliced bundle encodes its proof (evm_args) without loading web3
    from eth_account.signers.local import LocalAccount

    from proofmarket.chain.client import ChainClient

SLICED_VERIFIER = "SlicedVerifier"


def deploy(client: ChainClient, sender: LocalAccount, verifiers: list[str], inputs: list[int],
           outputs: list[int], shared: list[bool]) -> tuple[str, int]:
    """The SlicedVerifier over the slices' deployed ``verifiers`` (its layout: ``systems/ezkl/sliced.
    verifier_layout``; ``shared``: which are SharedVerifier clones): its address and the deployment's gas."""
    address, tx = client.deploy(load_artifact(SLICED_VERIFIER), sender, verifiers, inputs, outputs, shared)
    return address, tx.gas_used


def evm_args(bundle: dict[str, Any], vka: Callable[[int], list[bytes]] | None = None) -> tuple[bytes, list[int]]:
    """(proof, instances) of ``SlicedVerifier.verifyProof`` for a sliced bundle (its slices' proofs and instances).
    ``vka(k)``: the VKA words of slice k's verifier on a chain (a shared verifier's clone; empty: the slice's own
    verifier, ``systems/ezkl/chain_form.py``); None: the bundle's own form, for the slices' own verifiers."""
    parts = [[int(i, 16) for i in s["proof"]["instances"]] for s in bundle["slices"]]
    proofs = [bytes.fromhex(s["proof"]["hex"].removeprefix("0x")) for s in bundle["slices"]]
    vkas = [vka(k) if vka is not None else [] for k in range(len(proofs))]
    first, last = bundle["slices"][0]["layout"]["input"], bundle["slices"][-1]["layout"]["output"]
    instances = parts[0][:first] + parts[-1][len(parts[-1]) - last:]
    return encode(["bytes[]", "uint256[][]", "bytes32[][]"], [proofs, parts, vkas]), instances


def slice_verifiers(client: ChainClient, verifier: str) -> list[str]:
    """The slice verifiers of the SlicedVerifier at ``verifier``, in order."""
    contract = client.w3.eth.contract(address=client.w3.to_checksum_address(verifier),
                                      abi=load_artifact(SLICED_VERIFIER).abi)
    return [str(v) for v in client.call(contract.functions.slices())[0]]


def layout_of(w3: Any, verifier: str, model_id: str, inputs: list[int], outputs: list[int]
              ) -> tuple[list[str], list[bool]]:
    """The slice verifiers of the SlicedVerifier at ``verifier`` and which of them it sends a clone's form, once it
    checks the model's slicing (``sliced.verifier_layout``: ``inputs`` and ``outputs``); ``RegistryMismatch`` when
    it is no SlicedVerifier or checks another slicing."""
    from proofmarket.core.errors import RegistryMismatch

    contract = w3.eth.contract(address=w3.to_checksum_address(verifier), abi=load_artifact(SLICED_VERIFIER).abi)
    try:
        verifiers, ins, outs, shared = contract.functions.slices().call()
    except Exception as exc:
        raise RegistryMismatch(f"the verifier {verifier} of {model_id} is not a SlicedVerifier", model_id=model_id,
                               field="verifier_code") from exc
    if len(verifiers) != len(inputs) or (list(ins), list(outs)) != (inputs, outputs):
        raise RegistryMismatch(f"the verifier {verifier} of {model_id} checks another slicing than the model's",
                               model_id=model_id, field="verifier_code")
    return [str(v) for v in verifiers], [bool(s) for s in shared]


def check_kinds(code_at: Callable[[str], bytes], verifier: str, model_id: str, verifiers: list[str],
                shared: list[bool]) -> None:
    """Each slice verifier is a SharedVerifier clone exactly where the SlicedVerifier sends it a clone's form
    (``RegistryMismatch`` naming the first that is not)."""
    from proofmarket.chain.shared import parse_clone
    from proofmarket.core.errors import RegistryMismatch

    for k, (address, flag) in enumerate(zip(verifiers, shared, strict=True)):
        if (parse_clone(code_at(address)) is not None) != flag:
            raise RegistryMismatch(f"the verifier {verifier} of {model_id} sends slice {k + 1} the form of "
                                   f"{'a shared clone' if flag else 'its own verifier'}, and {address} is not one",
                                   model_id=model_id, field="verifier_code")


def built_code_hash(w3: Any, verifiers: list[str], inputs: list[int], outputs: list[int],
                    shared: list[bool]) -> bytes:
    """keccak of the runtime code a SlicedVerifier over ``verifiers`` with this layout has (its creation code run by
    ``eth_call``): what the code at a listing's verifier must hash to."""
    from proofmarket.chain.verify_code import creation_runtime_hash

    artifact = load_artifact(SLICED_VERIFIER)
    creation = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor(
        verifiers, inputs, outputs, shared).data_in_transaction
    return creation_runtime_hash(w3, creation)


def check(client: ChainClient, verifier: str, bundle: dict[str, Any],
          vka: Callable[[int], list[bytes]] | None = None) -> tuple[bool, int]:
    """``verifyProof`` of the bundle on ``verifier`` in an ``eth_call``: (the chain's answer, the gas it takes)."""
    contract = client.w3.eth.contract(address=client.w3.to_checksum_address(verifier),
                                      abi=load_artifact(SLICED_VERIFIER).abi)
    proof, instances = evm_args(bundle, vka)
    call = contract.functions.verifyProof(proof, instances)
    try:
        ok = bool(call.call())
    except Exception:  # a malformed proof reverts: the market counts it invalid, so does this check
        return False, 0
    return ok, int(call.estimate_gas()) if ok else 0
