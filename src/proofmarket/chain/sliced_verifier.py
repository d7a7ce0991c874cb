"""A sliced model's one verifier on chain (``contracts/SlicedVerifier.sol``): deployed over its slices' own EZKL
verifiers, it checks a call's every slice proof and link in one ``verifyProof(proof, instances)``, with the call's
instances laid out as one circuit's (the first slice's inputs, then the last slice's outputs): what the market binds
to a request and pays on.

    deploy     the SlicedVerifier over the slices' deployed verifiers (``onchain/sliced.py`` deploys those first)
    evm_args   a sliced bundle as that call: proof = abi.encode(bytes[] proofs, uint256[][] sliceInstances,
               bytes32[][] vkas), a slice on a SharedVerifier clone with its VKA (the SlicedVerifier sends it the
               proof behind it: the links are compared on the proofs themselves); a slice recorded before as an
               empty proof and its two link digests
    check      ``eth_call`` of ``verifyProof`` with its gas: True only when the chain says so
    record     ``record``: slices verified ahead of a call, in a transaction of their own, kept by ``record_key``
               (a call over one transaction's gas: ``onchain/sliced.py`` settles it in a sequence)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from proofmarket.chain.artifacts import load_artifact

if TYPE_CHECKING:  # a verifier of a sliced bundle encodes its proof (evm_args) without loading web3
    from eth_account.signers.local import LocalAccount

    from proofmarket.chain.client import ChainClient, TxResult

SLICED_VERIFIER = "SlicedVerifier"
POINT_BYTES = 64  # one commitment in an EZKL proof (the contract's POINT_BYTES)
Digests = tuple[bytes, bytes]  # a slice's (inDigest, outDigest)


def deploy(client: ChainClient, sender: LocalAccount, verifiers: list[str], inputs: list[int],
           outputs: list[int], shared: list[bool]) -> tuple[str, int]:
    """The SlicedVerifier over the slices' deployed ``verifiers`` (its layout: ``systems/ezkl/sliced.
    verifier_layout``; ``shared``: which are SharedVerifier clones): its address and the deployment's gas."""
    address, tx = client.deploy(load_artifact(SLICED_VERIFIER), sender, verifiers, inputs, outputs, shared)
    return address, tx.gas_used


def evm_args(bundle: dict[str, Any], vka: Callable[[int], list[bytes]] | None = None,
             recorded: dict[int, Digests] | None = None) -> tuple[bytes, list[int]]:
    """(proof, instances) of ``SlicedVerifier.verifyProof`` for a sliced bundle (its slices' proofs and instances).
    ``vka(k)``: the VKA words of slice k's verifier on a chain (a shared verifier's clone; empty: the slice's own
    verifier, ``systems/ezkl/chain_form.py``); None: the bundle's own form, for the slices' own verifiers.
    ``recorded``: the slices the SlicedVerifier recorded before, by index, with their link digests (sent in their
    proof's place)."""
    proofs, parts = slice_proofs(bundle)
    recorded = recorded or {}
    vkas = [list(recorded[k]) if k in recorded else vka(k) if vka is not None else [] for k in range(len(proofs))]
    proofs = [b"" if k in recorded else p for k, p in enumerate(proofs)]
    first, last = bundle["slices"][0]["layout"]["input"], bundle["slices"][-1]["layout"]["output"]
    instances = parts[0][:first] + parts[-1][len(parts[-1]) - last:]
    return encode(["bytes[]", "uint256[][]", "bytes32[][]"], [proofs, parts, vkas]), instances


def slice_proofs(bundle: dict[str, Any]) -> tuple[list[bytes], list[list[int]]]:
    """A sliced bundle's slices' EZKL proofs and instances, in order."""
    return ([bytes.fromhex(s["proof"]["hex"].removeprefix("0x")) for s in bundle["slices"]],
            [[int(i, 16) for i in s["proof"]["instances"]] for s in bundle["slices"]])


def link_digests(proof: bytes, k: int, inputs: list[int], outputs: list[int]) -> Digests | None:
    """Slice k's (inDigest, outDigest) in its proof as the SlicedVerifier takes them (keccak of its input
    commitments, of the output commitments after them; zero for the first slice's inputs and the last's outputs):
    None when the proof is shorter than its commitments. ``inputs``/``outputs``: the contract's layout."""
    start = 0 if k == 0 else inputs[k] * POINT_BYTES
    size = 0 if k == len(inputs) - 1 else outputs[k] * POINT_BYTES
    if len(proof) < start + size:
        return None
    return (keccak(proof[:start]) if k else bytes(32), keccak(proof[start:start + size]) if size else bytes(32))


def record_key(k: int, digests: Digests, parts: list[int]) -> bytes:
    """The key the SlicedVerifier records slice k under (its ``recordKey``)."""
    return keccak(encode(["uint256", "bytes32", "bytes32", "uint256[]"], [k, *digests, parts]))


def layout(client: ChainClient, verifier: str) -> tuple[list[str], list[int], list[int], list[bool]]:
    """The SlicedVerifier's slice verifiers, each slice's input and output counts, which are shared clones."""
    verifiers, inputs, outputs, shared = client.call(_contract(client, verifier).functions.slices())
    return [str(v) for v in verifiers], [int(i) for i in inputs], [int(o) for o in outputs], [bool(s) for s in shared]


def is_recorded(client: ChainClient, verifier: str, key: bytes) -> bool:
    return bool(client.call(_contract(client, verifier).functions.recorded(key)))


RecordArgs = tuple[list[int], list[bytes], list[list[int]], list[list[bytes]]]  # slices, proofs, instances, VKAs


def estimate_record(client: ChainClient, verifier: str, sender: str, args: RecordArgs) -> int:
    """The gas ``record`` of these slices takes (``ContractReverted`` naming ``SliceInvalid`` for a slice its
    verifier refuses)."""
    return client.estimate(_contract(client, verifier).functions.record(*args), sender)


def record(client: ChainClient, verifier: str, sender: LocalAccount, args: RecordArgs) -> TxResult:
    """``record`` these slices (each verified on its verifier, kept by ``record_key``)."""
    return client.transact(_contract(client, verifier).functions.record(*args), sender)


RECORDED_SLOT = 0  # the storage slot of SlicedVerifier.recorded (its first state variable; a test reads it back)


def check_in_steps(client: ChainClient, verifier: str, bundle: dict[str, Any],
                   vka: Callable[[int], list[bytes]] | None = None) -> tuple[bool, int]:
    """``verifyProof`` of a sliced bundle in the steps a settlement over one transaction's gas takes, each an
    ``eth_call`` (nothing kept): every slice's ``record`` (the slice's verifier, through the SlicedVerifier's own
    code), then ``verifyProof`` naming every slice by its record, the records set by a state override. (The chain's
    answer, the steps' gas.)"""
    _, inputs, outputs, _ = layout(client, verifier)
    proofs, parts = slice_proofs(bundle)
    vkas = [vka(k) if vka is not None else [] for k in range(len(proofs))]
    contract, gas = _contract(client, verifier), 0
    digests: dict[int, Digests] = {}
    diff: dict[str, str] = {}
    for k, proof in enumerate(proofs):
        found = link_digests(proof, k, inputs, outputs)
        if found is None:
            return False, 0
        step = contract.functions.record([k], [proof], [parts[k]], [vkas[k]])
        try:
            step.call()
            gas += int(step.estimate_gas())
        except Exception:  # a slice its verifier refuses (SliceInvalid), or malformed (BadSlice)
            return False, 0
        digests[k] = found
        slot = keccak(record_key(k, found, parts[k]) + RECORDED_SLOT.to_bytes(32, "big"))
        diff["0x" + slot.hex()] = "0x" + (1).to_bytes(32, "big").hex()
    proof, instances = evm_args(bundle, vka, recorded=digests)
    call = {"to": contract.address, "data": contract.encode_abi("verifyProof", [proof, instances])}
    override = {contract.address: {"stateDiff": diff}}
    try:
        answer = client.rpc("eth_call", [call, "latest", override])
    except Exception:
        return False, 0
    if int(str(answer), 16) != 1:
        return False, 0
    with contextlib.suppress(Exception):  # an RPC without overrides in estimates: the records' gas is what is known
        gas += int(str(client.rpc("eth_estimateGas", [call, "latest", override])), 16)
    return True, gas


def _contract(client: ChainClient, verifier: str) -> Any:
    return client.w3.eth.contract(address=client.w3.to_checksum_address(verifier),
                                  abi=load_artifact(SLICED_VERIFIER).abi)


def slice_verifiers(client: ChainClient, verifier: str) -> list[str]:
    """The slice verifiers of the SlicedVerifier at ``verifier``, in order."""
    return layout(client, verifier)[0]


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
    proof, instances = evm_args(bundle, vka)
    call = _contract(client, verifier).functions.verifyProof(proof, instances)
    try:
        ok = bool(call.call())
    except Exception:  # a malformed proof reverts: the market counts it invalid, so does this check
        return False, 0
    return ok, int(call.estimate_gas()) if ok else 0
