"""Is this registry entry the model we know? Checked before proving or escrowing for an on-chain model id.

A model id on chain is only a name: whoever registered it chose the verifier, the vk digest and the price.
``check_entry`` compares the entry with the local manifest (the model this node or client compiled or
fetched by CID) and refuses with ``RegistryMismatch`` naming the first field that differs:

- ``key``: the entry lists another CID;
- ``vk_digest``, ``onnx_sha256``, ``settings_hash``: another circuit or model;
- ``input_instances``, ``instance_count``, ``params_commitment``: another instance layout;
- ``verifier_code``: the verifier's code is not the one compiled from the manifest (the code hash recorded
  at registration and the code at the address now must both equal the runtime code of the manifest's
  verifier bytecode, obtained with an eth_call of its creation code); for a listing on the shared verifier, the
  clone is not this market's SharedVerifier's or its reusable verifier's code is not the manifest's;
- ``vka_digest``: a shared-verifier listing pins another verification-key artifact than the manifest's;
  ``vka_registered``: ... one not registered on its reusable verifier (every proof would be refused);
- ``batch_verifier``: a batch verifier the owner registered is not the one compiled from the manifest's batch
  circuit of its size (or the manifest has no such circuit);
- ``owner``: not the expected owner; ``price``: above the caller's cap; ``active``: deactivated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eth_utils.crypto import keccak

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.commitments import model_key
from proofmarket.chain.shared import SharedVerifierFactory, parse_clone
from proofmarket.chain.types import RegisteredModel
from proofmarket.chain.verify_code import creation_runtime_hash
from proofmarket.core.errors import RegistryMismatch
from proofmarket.onchain.spec import ATTESTED_VERIFIER, attested_fields, instance_count, proof_mode
from proofmarket.systems.ezkl.manifest import VerifierRef
from proofmarket.systems.ezkl.shared_verifier import vka_digest, vka_words

if TYPE_CHECKING:
    from proofmarket.onchain.base import MarketBase as Market


def check_entry(market: Market, model_id: str, entry: RegisteredModel, *, max_price: int | None = None,
                owner: str | None = None) -> None:
    attested = market.attested_manifest(model_id)
    if attested is not None:
        _check_attested(market, model_id, entry, attested)
    elif market.sliced_manifest(model_id) is not None:
        from proofmarket.onchain.sliced import check_sliced_entry

        check_sliced_entry(market, model_id, entry)
    else:
        _check_proven(market, model_id, entry)
    if owner is not None and entry.owner.lower() != owner.lower():
        raise RegistryMismatch(f"model {model_id} is listed by {entry.owner}, not by {owner}", model_id=model_id,
                               field="owner")
    if max_price is not None and entry.spec.price > max_price:
        raise RegistryMismatch(f"model {model_id} costs {entry.spec.price} atomic USDC on chain, above the cap of "
                               f"{max_price}", model_id=model_id, field="price", price=entry.spec.price)
    if not entry.active:
        raise RegistryMismatch(f"model {model_id} is deactivated on chain", model_id=model_id, field="active")


def check_fields(model_id: str, entry: RegisteredModel, want: dict[str, Any]) -> None:
    """The entry's key is the model's and its identity fields are ``want``'s (a manifest's: vk digest, ONNX and
    settings hashes, instance layout, proof mode); ``RegistryMismatch`` naming the first that differs."""
    spec = entry.spec
    got = {"key": entry.key, "vk_digest": spec.vk_digest.hex(), "onnx_sha256": spec.onnx_sha256.hex(),
           "settings_hash": spec.settings_hash.hex(), "input_instances": spec.input_instances,
           "instance_count": spec.instance_count, "proof_mode": int(spec.proof_mode)}
    for field, value in {"key": model_key(model_id), **want}.items():
        if got[field] != value:
            raise RegistryMismatch(f"the registry entry for {model_id} has another {field} than the model's "
                                   "manifest: it is not this model", model_id=model_id, field=field)


def _check_attested(market: Market, model_id: str, entry: RegisteredModel, manifest: Any) -> None:
    """An attested model's entry: its system, weights root, manifest digest and layout, and a verifier whose
    code is the AttestationVerifier for these weights (its attester is whoever the owner named)."""
    spec = entry.spec
    check_fields(model_id, entry, attested_fields(manifest, model_id))
    artifact = load_artifact(ATTESTED_VERIFIER)
    w3 = market.client.w3
    contract = w3.eth.contract(address=w3.to_checksum_address(spec.verifier), abi=artifact.abi)
    try:
        attester = market.client.call(contract.functions.attester())
    except Exception as exc:
        raise RegistryMismatch(f"the verifier of {model_id} is not an AttestationVerifier", model_id=model_id,
                               field="verifier_code") from exc
    root = bytes.fromhex(manifest.weights.root.removeprefix("0x"))
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    creation = factory.constructor(attester, root).data_in_transaction
    now = keccak(market.client.code_at(spec.verifier))
    if now != entry.verifier_codehash or now != creation_runtime_hash(w3, creation):
        raise RegistryMismatch(f"the verifier of {model_id} at {spec.verifier} is not the AttestationVerifier of "
                               "its weights", model_id=model_id, field="verifier_code")


def _check_proven(market: Market, model_id: str, entry: RegisteredModel) -> None:
    manifest = market.manifest(model_id)
    spec = entry.spec
    expected = {
        "key": (entry.key, model_key(model_id)),
        "vk_digest": (spec.vk_digest.hex(), manifest.vk.sha256),
        "onnx_sha256": (spec.onnx_sha256.hex(), manifest.onnx.sha256),
        "settings_hash": (spec.settings_hash.hex(), manifest.settings.sha256),
        "input_instances": (spec.input_instances, manifest.layout.input),
        "instance_count": (spec.instance_count, instance_count(manifest)),
        "proof_mode": (int(spec.proof_mode), int(proof_mode(manifest))),
    }
    for field, (got, want) in expected.items():
        if got != want:
            raise RegistryMismatch(f"the registry entry for {model_id} has another {field} than the model's "
                                   "manifest: it is not this model", model_id=model_id, field=field)
    _check_verifier(market, model_id, entry)
    _check_batches(market, model_id, entry)


def _check_batches(market: Market, model_id: str, entry: RegisteredModel) -> None:
    """Every batch verifier the owner registered (any size: fulfillBatch takes any registered one) runs the code
    compiled from the manifest's batch circuit of its size: an owner cannot name a verifier that accepts anything
    (which would settle later requests with any output) or one that refuses good proofs (which would slash)."""
    manifest = market.manifest(model_id)
    seen: dict[tuple[bytes, int], str] = market.__dict__.setdefault("_batch_verifiers_checked", {})
    for found in market.registry.batch_verifiers(entry.model_id):
        if seen.get((entry.model_id, found.size)) == found.address:
            continue  # set once per size on the registry: checked before
        circuit = manifest.batch(found.size)
        where = f"the batch verifier of {found.size} calls of {model_id} at {found.address}"
        if circuit is None or circuit.verifier is None:
            raise RegistryMismatch(f"{where} is for a batch circuit the model's manifest does not have",
                                   model_id=model_id, field="batch_verifier", size=found.size)
        assert found.address is not None
        code = keccak(market.client.code_at(found.address))
        if code != found.codehash or code != _runtime_hash(market, circuit.verifier):
            raise RegistryMismatch(f"{where} is not the one compiled from the model's manifest", model_id=model_id,
                                   field="batch_verifier", size=found.size)
        seen[(entry.model_id, found.size)] = found.address


def _check_verifier(market: Market, model_id: str, entry: RegisteredModel) -> None:
    code = market.client.code_at(entry.spec.verifier)
    now = keccak(code)
    if now != entry.verifier_codehash:
        raise RegistryMismatch(f"the verifier of {model_id} at {entry.spec.verifier} changed since registration",
                               model_id=model_id, field="verifier_code")
    clone = parse_clone(code)
    if clone is not None:
        return check_shared(market, model_id, entry.spec.verifier, *clone)
    if now != expected_verifier_codehash(market, model_id):
        raise RegistryMismatch(f"the verifier of {model_id} at {entry.spec.verifier} is not the one compiled from "
                               "its manifest", model_id=model_id, field="verifier_code")


def expected_verifier_codehash(market: Market, model_id: str) -> bytes:
    """keccak of the runtime code the manifest's verifier would deploy: its creation code run by eth_call
    (no transaction, no gas paid), so any chain can check a verifier against the manifest."""
    return _runtime_hash(market, market.manifest(model_id).verifier)


def _runtime_hash(market: Market, verifier: VerifierRef) -> bytes:
    """keccak of the runtime code a manifest's Solidity verifier (the model's own, or a batch circuit's) deploys."""
    return creation_runtime_hash(market.client.w3, market.workspace.store.get(verifier.bytecode.cid).decode())


def check_shared(market: Market, model_id: str, verifier: str, implementation: str, reusable: str,
                  digest: bytes) -> None:
    """A listing on the shared verifier: a clone of this market's SharedVerifier pinning the manifest's VKA digest, on
    a reusable verifier whose code is the manifest's (and the manifest's VKA file has that digest)."""
    shared = market.manifest(model_id).shared_verifier
    where = f"the verifier of {model_id} at {verifier}"
    if shared is None:
        raise RegistryMismatch(f"{where} is a shared verifier, and the model's manifest has none", model_id=model_id,
                               field="verifier_code")
    if implementation.lower() != (market.deployment.shared_verifier or "").lower():
        raise RegistryMismatch(f"{where} is a clone of {implementation}, not of this market's SharedVerifier",
                               model_id=model_id, field="verifier_code")
    words = vka_words(market.workspace.store.get(shared.vka.cid))
    if "0x" + digest.hex() != shared.vka_digest or vka_digest(words) != shared.vka_digest:
        raise RegistryMismatch(f"{where} pins another verification-key artifact than the model's", model_id=model_id,
                               field="vka_digest")
    if "0x" + keccak(market.client.code_at(reusable)).hex() != shared.runtime_keccak:
        raise RegistryMismatch(f"{where} uses a reusable verifier at {reusable} whose code is not the manifest's",
                               model_id=model_id, field="verifier_code")
    if not SharedVerifierFactory(market.client, implementation).vka_registered(reusable, digest):
        raise RegistryMismatch(f"{where} pins a VKA not registered on its reusable verifier: every proof would be "
                               "refused", model_id=model_id, field="vka_registered")
