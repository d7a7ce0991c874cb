"""A proven bundle's proof in the form the verifier a chain names takes it: one place for the fulfilment (the
market's provers) and for anyone checking a bundle on chain (``verify --onchain``, the SDK).

    the model's own EZKL verifier (or a batch verifier)   the EZKL proof as it is
    a SharedVerifier clone (contracts/SharedVerifier.sol)  abi.encode(VKA words, EZKL proof), the VKA the manifest's
    a SlicedVerifier (contracts/SlicedVerifier.sol)        abi.encode(bytes[] proofs, uint256[][] instances,
                                                           bytes32[][] vkas): each slice's EZKL proof, and the VKA
                                                           of a slice on a clone (the SlicedVerifier puts it in front)

A bundle's ``evm_calldata`` is the first (or a sliced bundle's, its slices' own verifiers'); a listing on the shared
verifier needs the VKA, which the manifest names by CID.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_abi.abi import encode

from proofmarket.chain.shared import parse_clone
from proofmarket.core.errors import ChainError
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.shared_verifier import shared_proof, vka_words
from proofmarket.systems.ezkl.verify import VERIFY_PROOF_SELECTOR, load_manifest

CodeAt = Callable[[str], bytes]  # an address's runtime code
SlicesOf = Callable[[str], list[str]]  # a SlicedVerifier's slice verifiers, in order


def proof_for(code_at: CodeAt, store: ArtifactStore, model_id: str, verifier: str, proof: bytes) -> bytes:
    """The proof bytes ``verifier`` takes for a proof of ``model_id`` (a circuit's, not a sliced model's):
    ``ChainError`` when it is a shared-verifier clone pinning another VKA than the model's manifest names."""
    words = vka_for(code_at, store, model_id, verifier)
    return proof if not words else shared_proof(words, proof)


def vka_for(code_at: CodeAt, store: ArtifactStore, model_id: str, verifier: str) -> list[bytes]:
    """The VKA words ``verifier`` takes in front of a proof of ``model_id`` (empty: none, the model's own EZKL
    verifier); ``ChainError`` when it is a shared-verifier clone pinning another VKA than the manifest names."""
    clone = parse_clone(code_at(verifier))
    if clone is None:
        return []
    shared = load_manifest(store, model_id).shared_verifier
    if shared is None or shared.vka_digest != "0x" + clone[2].hex():
        raise ChainError(f"the verifier {verifier} of {model_id} is a shared verifier of another VKA than the "
                         "model's manifest names", model_id=model_id)
    return vka_words(store.get(shared.vka.cid))


def verify_args(code_at: CodeAt, slices_of: SlicesOf, store: ArtifactStore, bundle: dict[str, Any],
                verifier: str) -> tuple[bytes, list[int]]:
    """(proof, instances) of ``verifier.verifyProof`` for ``bundle`` (a proof bundle or a sliced bundle)."""
    if bundle.get("kind") == "proofmarket/sliced-bundle":
        from proofmarket.chain.sliced_verifier import evm_args

        ids = [str(s["model"]["id"]) for s in bundle["slices"]]
        verifiers = slices_of(verifier)
        if len(verifiers) != len(ids):
            raise ChainError(f"the verifier {verifier} checks {len(verifiers)} slices; the bundle proves {len(ids)}",
                             verifier=verifier)
        return evm_args(bundle, lambda k: vka_for(code_at, store, ids[k], verifiers[k]))
    proof = bytes.fromhex(str(bundle["proof"]["hex"]).removeprefix("0x"))
    instances = [int(str(v), 16) for v in bundle["proof"]["instances"]]
    return proof_for(code_at, store, str(bundle["model"]["id"]), verifier, proof), instances


def calldata(code_at: CodeAt, slices_of: SlicesOf, store: ArtifactStore, bundle: dict[str, Any],
             verifier: str) -> str:
    """``verifyProof(proof, instances)``'s calldata for ``verifier`` (0x hex)."""
    proof, instances = verify_args(code_at, slices_of, store, bundle, verifier)
    return "0x" + VERIFY_PROOF_SELECTOR + encode(["bytes", "uint256[]"], [proof, instances]).hex()


def in_steps(client: Any, store: ArtifactStore, bundle: dict[str, Any]) -> Callable[[str], tuple[bool, int]] | None:
    """A sliced bundle's check slice by slice on a SlicedVerifier (``chain/sliced_verifier.check_in_steps``, each
    clone's slice with its VKA); None for any other bundle."""
    if bundle.get("kind") != "proofmarket/sliced-bundle":
        return None
    from proofmarket.chain.sliced_verifier import check_in_steps, slice_verifiers

    ids = [str(s["model"]["id"]) for s in bundle["slices"]]

    def check(verifier: str) -> tuple[bool, int]:
        verifiers = slice_verifiers(client, verifier)
        return check_in_steps(client, verifier, bundle, lambda k: vka_for(client.code_at, store, ids[k], verifiers[k]))

    return check
