"""A proven bundle checked by the chain itself: the registry's verifier for the bundle's model (its own verifier, a
shared-verifier clone, or the batch verifier of the bundle's batch size) runs ``verifyProof`` on the bundle's EVM
calldata in an ``eth_call``, with its gas.

The listings are found by the model's key (``keccak(model id)``, an indexed topic of ``ModelRegistered``); anyone
may list a key, with a verifier of their own, so with ``own`` (a check that a verifier is the model's own: its
manifest's code, ``sdk/own_verifier.py``) only listings that pass it are used, and the owners of every such listing
are named; ``owner`` picks one owner's listing. The verifier's code must still be the code the registry recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.abi import event_abi_to_log_topic
from eth_utils.crypto import keccak

from proofmarket.chain.client import ChainClient
from proofmarket.chain.commitments import model_key
from proofmarket.chain.contracts import ModelRegistry
from proofmarket.chain.types import RegisteredModel
from proofmarket.core.errors import RegistryMismatch, UsageError, VerificationFailed


@dataclass(frozen=True)
class OnChainCheck:
    chain_id: int
    registry: str
    model_id: str  # the bundle's model (its CID)
    listing: str  # the registry's on-chain id of the listing used (0x...)
    owner: str
    verifier: str
    batch_size: int | None
    gas: int
    owners: list[str] = field(default_factory=list)  # every owner whose listing of the model passed ``own``
    checked_own: bool = False  # the verifier was checked to be the model's own (its manifest's code)

    def to_json(self) -> dict[str, Any]:
        return {"valid": True, "chain_id": self.chain_id, "registry": self.registry, "model_id": self.model_id,
                "listing": self.listing, "owner": self.owner, "verifier": self.verifier,
                "batch_size": self.batch_size, "gas": self.gas, "owners": self.owners,
                "verifier_is_models_own": self.checked_own}


def listings_of(client: ChainClient, registry: ModelRegistry, model_id: str, from_block: int = 0
                ) -> list[RegisteredModel]:
    """Every registry listing of ``model_id`` (any owner), in registration order."""
    logs = client.w3.eth.get_logs({"address": client.w3.to_checksum_address(registry.address),
                                   "fromBlock": from_block, "toBlock": "latest",
                                   "topics": [_registered_topic(registry), None, None,
                                              "0x" + model_key(model_id).hex()]})
    ids = list(dict.fromkeys(bytes(entry["topics"][1]) for entry in logs))
    return [registry.get_model(listing) for listing in ids]


def _registered_topic(registry: ModelRegistry) -> str:
    """topic0 of ``ModelRegistered`` (its signature's keccak), from the registry's own ABI."""
    [abi] = [e for e in registry.artifact.abi if e.get("type") == "event" and e.get("name") == "ModelRegistered"]
    return "0x" + bytes(event_abi_to_log_topic(abi)).hex()  # type: ignore[arg-type]


OwnCheck = Callable[[str, int | None], None]  # (verifier address, batch size): RegistryMismatch unless the model's
Calldata = Callable[[str], str]  # the eth_call data of verifyProof for a verifier (its form: a shared clone's VKA)
InSteps = Callable[[str], tuple[bool, int]]  # a sliced bundle checked slice by slice on a verifier: (answer, gas)


def verify_on_chain(client: ChainClient, registry: ModelRegistry, bundle: dict[str, Any], *,
                    owner: str | None = None, from_block: int = 0, own: OwnCheck | None = None,
                    calldata: Calldata | None = None, in_steps: InSteps | None = None) -> OnChainCheck:
    """Run the bundle's proof through its model's verifier on chain; ``VerificationFailed`` when the chain refuses
    it, ``RegistryMismatch`` when no listing of the model (of ``owner``) is on this registry, or none whose
    verifier passes ``own``. ``calldata(verifier)``: the call in the form that verifier takes
    (``systems/ezkl/chain_form.py``: a shared-verifier clone takes the VKA with the proof); default the bundle's
    own ``evm_calldata`` (the model's own verifier, or a sliced model's over its slices' own). ``in_steps(verifier)``:
    a sliced bundle's check in the steps a settlement over one transaction's gas takes (``sliced_verifier.
    check_in_steps``), run when the one call fails: (the answer, the steps' gas)."""
    if bundle.get("mode") == "attested":
        raise UsageError("an attested bundle holds no proof for a chain to check: verify it with --reexecute, or "
                         "through the court")
    model_id = str((bundle.get("model") or {}).get("id") or "")
    own_form = str((bundle.get("proof") or {}).get("evm_calldata") or "")
    if not model_id or not own_form.startswith("0x"):
        raise UsageError("the bundle names no model id or EVM calldata: not a proven proofmarket bundle")
    listings = [m for m in listings_of(client, registry, model_id, from_block)
                if owner is None or m.owner.lower() == owner.lower()]
    if not listings:
        whose = f" by {owner}" if owner else ""
        raise RegistryMismatch(f"model {model_id} is not listed{whose} on the registry {registry.address} (chain "
                               f"{client.chain_id}): nothing on chain can check its proof", model_id=model_id,
                               field="listed")
    batch = bundle.get("batch") or None
    size = int(batch["size"]) if isinstance(batch, dict) and batch.get("size") else None
    verifiers = {m.model_id: _verifier_of(registry, m, size) for m in listings}
    listings = [m for m in listings if verifiers[m.model_id]]
    if not listings:
        raise RegistryMismatch(f"no listing of model {model_id} has a verifier for batches of {size}",
                               model_id=model_id, field="batch_verifier")
    if own is not None:
        refused: list[str] = []
        kept = []
        for m in listings:
            try:
                own(verifiers[m.model_id], size)
                kept.append(m)
            except RegistryMismatch as exc:
                refused.append(f"{m.owner}: {exc.message}")
        if not kept:
            raise RegistryMismatch(f"no listing of model {model_id} on the registry {registry.address} runs the "
                                   f"model's own verifier ({'; '.join(refused)})", model_id=model_id,
                                   field="verifier_code", refused=refused)
        listings = kept
    entry = next((m for m in listings if m.active), listings[0])
    verifier = verifiers[entry.model_id]
    if size is None:
        code = bytes(client.w3.eth.get_code(client.w3.to_checksum_address(verifier)))
        if entry.verifier_codehash != bytes(32) and keccak(code) != entry.verifier_codehash:
            raise RegistryMismatch(f"the verifier {verifier} no longer has the code the registry recorded",
                                   model_id=model_id, field="verifier_code")
    # within what one transaction carries (a settlement's bound): a sliced call over it is checked in its steps
    call = {"to": verifier, "data": calldata(verifier) if calldata is not None else own_form,
            "gas": hex(client.profile.max_tx_gas)}
    try:
        answer = client.rpc("eth_call", [call, "latest"])
    except Exception as exc:
        if in_steps is None:
            raise VerificationFailed(f"the verifier {verifier} on chain {client.chain_id} refused this proof "
                                     f"(verifyProof reverted: {' '.join(str(exc).split())[:200]})",
                                     verifier=verifier) from None
        answer = None
    if answer is None and in_steps is not None:
        ok, gas = in_steps(verifier)
        if not ok:
            raise VerificationFailed(f"the verifier {verifier} on chain {client.chain_id} refused this proof, in one "
                                     "call and slice by slice (SlicedVerifier.record, then verifyProof of the "
                                     "records)", verifier=verifier)
    elif int(str(answer), 16) != 1:
        raise VerificationFailed(f"the verifier {verifier} on chain {client.chain_id} returned false for this proof",
                                 verifier=verifier)
    else:
        gas = int(str(client.rpc("eth_estimateGas", [call])), 16)
    return OnChainCheck(client.chain_id, registry.address, model_id, "0x" + entry.model_id.hex(), entry.owner,
                        verifier, size, gas, sorted({m.owner for m in listings}), own is not None)


def _verifier_of(registry: ModelRegistry, entry: RegisteredModel, size: int | None) -> str:
    """The verifier a listing settles this bundle with: its own, or its batch verifier of ``size`` calls ("": it
    has none)."""
    if size is None:
        return str(entry.spec.verifier)
    return str(registry.batch_verifier(entry.model_id, size).address or "")
