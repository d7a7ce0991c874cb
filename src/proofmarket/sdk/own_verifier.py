"""Whether a verifier on chain is a model's own: the code compiled from the model's manifest (its creation code,
fetched by CID and run by ``eth_call``), a shared-verifier clone pinning the manifest's VKA on the manifest's
reusable code, or, for batches, the code of the manifest's batch circuit of that size. Anyone may list a model's key
with a verifier of their own (one that answers true to anything): ``verify --onchain``, the SDK's
``check_listing`` and ``verify_on_chain`` use a listing only when its verifier passes this check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proofmarket.chain.onchain_verify import OwnCheck
from proofmarket.core.errors import RegistryMismatch, VerificationFailed
from proofmarket.store import LocalStore

Fetch = Callable[[str], None]  # brings an artifact (by CID) into the store, or raises


def own_check(w3: Any, store: LocalStore, manifest: Any, model_id: str, fetch: Fetch = lambda cid: None) -> OwnCheck:
    """The check ``verify_on_chain`` runs on each listing's verifier (``own_code_hash``, its result dropped)."""
    def check(verifier: str, batch_size: int | None) -> None:
        own_code_hash(w3, store, manifest, model_id, verifier, batch_size=batch_size, fetch=fetch)

    return check


def own_code_hash(w3: Any, store: LocalStore, manifest: Any, model_id: str, verifier: str, *,
                  batch_size: int | None = None, fetch: Fetch = lambda cid: None) -> bytes:
    """keccak of ``verifier``'s code once it is the model's own verifier (of ``batch_size`` calls); else
    ``RegistryMismatch`` naming the field that differs."""
    from eth_utils.crypto import keccak

    from proofmarket.chain.shared import parse_clone
    from proofmarket.chain.verify_code import creation_runtime_hash

    code = bytes(w3.eth.get_code(w3.to_checksum_address(verifier)))
    if batch_size is None and parse_clone(code) is not None:  # listed on the shared verifier
        _check_shared(w3, store, manifest, model_id, code, fetch)
        return bytes(keccak(code))
    if batch_size is None:
        creation = manifest.verifier.bytecode.cid
    else:
        circuit = manifest.batch(batch_size)
        if circuit is None or circuit.verifier is None:
            raise RegistryMismatch(f"{model_id} has a batch verifier of {batch_size} calls its manifest has no "
                                   "circuit for", model_id=model_id, field="batch_verifier", size=batch_size)
        creation = circuit.verifier.bytecode.cid
    fetch(creation)
    runtime = creation_runtime_hash(w3, store.get(creation).decode())
    if keccak(code) != runtime:
        raise RegistryMismatch(f"the verifier {verifier} of {model_id} is not the one compiled from its manifest",
                               model_id=model_id, field="verifier_code" if batch_size is None else "batch_verifier")
    return bytes(runtime)


def _check_shared(w3: Any, store: LocalStore, manifest: Any, model_id: str, code: bytes, fetch: Fetch) -> None:
    """A shared-verifier listing: the clone pins the manifest's VKA, whose words EZKL renders again from the
    manifest's vk, on a reusable verifier whose code is the manifest's."""
    from eth_utils.crypto import keccak

    from proofmarket.chain.artifacts import load_artifact
    from proofmarket.chain.shared import parse_clone
    from proofmarket.chain.verify_code import onchain_code_hash, runtime_code_hash
    from proofmarket.systems.ezkl.shared_verifier import check_vka

    clone = parse_clone(code)
    shared = manifest.shared_verifier
    assert clone is not None
    factory = load_artifact("SharedVerifier")  # the clone's implementation must be this code (immutables masked)
    if onchain_code_hash(bytes(w3.eth.get_code(clone[0])), factory) != runtime_code_hash(factory):
        raise RegistryMismatch(f"the verifier of {model_id} is a clone of {clone[0]}, which is not a "
                               "SharedVerifier", model_id=model_id, field="verifier_code")
    if shared is None or "0x" + clone[2].hex() != shared.vka_digest:
        raise RegistryMismatch(f"the verifier of {model_id} pins another VKA than its manifest's",
                               model_id=model_id, field="vka_digest")
    for cid in (shared.vka.cid, manifest.vk.cid, manifest.settings.cid, manifest.srs.cid):
        fetch(cid)
    try:
        check_vka(store, manifest)
    except VerificationFailed as exc:
        raise RegistryMismatch(f"{model_id}: {exc.message}", model_id=model_id, field="vka") from exc
    if "0x" + keccak(bytes(w3.eth.get_code(clone[1]))).hex() != shared.runtime_keccak:
        raise RegistryMismatch(f"the shared verifier of {model_id} runs another code than its manifest's",
                               model_id=model_id, field="verifier_code")


def own_sliced_check(w3: Any, store: LocalStore, model_id: str, fetch: Fetch = lambda cid: None) -> OwnCheck:
    """``own_check`` for a sliced model (``systems/ezkl/sliced.py``): the listing's verifier is the SlicedVerifier
    of the model's slicing over each slice's own verifier (``own_sliced_code_hash``)."""
    def check(verifier: str, batch_size: int | None) -> None:
        if batch_size is not None:
            raise RegistryMismatch(f"{model_id} is proven as slices: it has no batch verifier", model_id=model_id,
                                   field="batch_verifier")
        own_sliced_code_hash(w3, store, model_id, verifier, fetch=fetch)

    return check


def own_sliced_code_hash(w3: Any, store: LocalStore, model_id: str, verifier: str, *,
                         fetch: Fetch = lambda cid: None) -> bytes:
    """keccak of ``verifier``'s code once it is the sliced model's own: a SlicedVerifier (its code is the one this
    package ships, built over the verifiers and layout it names) over verifiers each the slice's own
    (``own_code_hash``: its manifest's code, or a shared clone pinning its VKA), with the model's layout."""
    from eth_utils.crypto import keccak

    from proofmarket.chain.sliced_verifier import built_code_hash, check_kinds, layout_of
    from proofmarket.systems.ezkl.sliced import load_sliced, verifier_layout
    from proofmarket.systems.ezkl.verify import load_manifest

    sliced = load_sliced(store, model_id)
    for slice_id in sliced.slices:
        fetch(slice_id)
    manifests = [load_manifest(store, i) for i in sliced.slices]
    for m in manifests:
        fetch(m.settings.cid)
    layout = verifier_layout(store, model_id, sliced, manifests)
    verifiers, clones = layout_of(w3, verifier, model_id, *layout)
    check_kinds(lambda a: bytes(w3.eth.get_code(w3.to_checksum_address(a))), verifier, model_id, verifiers, clones)
    for slice_id, manifest, address in zip(sliced.slices, manifests, verifiers, strict=True):
        own_code_hash(w3, store, manifest, slice_id, address, fetch=fetch)
    code = bytes(w3.eth.get_code(w3.to_checksum_address(verifier)))
    if keccak(code) != built_code_hash(w3, verifiers, *layout, clones):
        raise RegistryMismatch(f"the verifier {verifier} of {model_id} is not the SlicedVerifier of its slices",
                               model_id=model_id, field="verifier_code")
    return bytes(keccak(code))
