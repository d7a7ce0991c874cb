"""A sliced model's verifiers on a chain: each slice's own EZKL verifier (from its manifest's bytecode) or, for a
slice whose verifier is over the EVM's code size limit (or when the owner asks), the slice on the chain's shared
verifier (a SharedVerifier clone pinning the slice's VKA); then the SlicedVerifier over them
(``chain/sliced_verifier.py``): the one address a listing of the model names. A clone takes its slice's proof with
the VKA in front (``systems/ezkl/chain_form.py``), which the SlicedVerifier puts there."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from proofmarket.chain import sliced_verifier
from proofmarket.chain.artifacts import Artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.types import ModelSpec, ProofMode, RegisteredModel
from proofmarket.chain.verify_code import creation_runtime_hash
from proofmarket.core.errors import ChainError, RegistryMismatch, UsageError
from proofmarket.onchain.spec import proof_mode
from proofmarket.store import ArtifactStore
from proofmarket.store.cid import digest_of
from proofmarket.systems.ezkl.sliced import load_sliced, verifier_layout
from proofmarket.systems.ezkl.verify import load_manifest


@dataclass(frozen=True)
class SlicedDeployment:
    address: str  # the SlicedVerifier: the model's one verifier
    slices: list[str]  # each slice's own verifier, in order
    gas_used: int  # every deployment's gas together


def deploy_sliced(client: ChainClient, sender: LocalAccount, store: ArtifactStore, model_id: str,
                  shared: Callable[[str], str] | None = None, all_shared: bool = False) -> SlicedDeployment:
    """Deploy the sliced model ``model_id``'s slice verifiers and its SlicedVerifier over them. ``shared(slice_id)``
    puts a slice on the chain's shared verifier (its clone's address): every slice with ``all_shared``, else each
    slice whose own verifier cannot be deployed (over EIP-170's limit)."""
    from proofmarket.systems.ezkl.solidity import EIP170_MAX_CODE

    sliced, manifests = slice_manifests(store, model_id)
    clones = [all_shared or m.verifier is None or m.verifier.deployed_size > EIP170_MAX_CODE for m in manifests]
    for k, m in enumerate(manifests):  # every slice checked before anything is deployed: no gas spent on a half
        if not clones[k]:
            continue
        if m.shared_verifier is None:
            own = "" if m.verifier is None or all_shared else \
                f"its own verifier is {m.verifier.deployed_size:,} bytes, over EIP-170's {EIP170_MAX_CODE:,}, and "
            raise UsageError(f"slice {k + 1} of model {model_id} cannot be verified on chain: {own}it has no shared "
                             "verifier (EZKL could not render one, or it refused the slice's proof: its compile "
                             "said which); sell the model over x402 (verified off chain), or compile it again with "
                             "another --slices", slice=k + 1)
        if shared is None:
            raise UsageError(f"slice {k + 1} of model {model_id} has no verifier under the EVM's code size limit "
                             "and this chain has no shared verifier: run 'proofmarket chain deploy'")
    addresses, gas = [], 0
    for k, m in enumerate(manifests):
        if clones[k]:
            assert shared is not None
            addresses.append(shared(sliced.slices[k]))
            continue
        assert m.verifier is not None
        artifact = Artifact(name=f"Halo2Verifier({sliced.name} slice {k + 1})",
                            abi=json.loads(store.get(m.verifier.abi.cid)),
                            bytecode=store.get(m.verifier.bytecode.cid).decode().strip(), deployed_bytecode="")
        address, tx = client.deploy(artifact, sender)
        addresses.append(address)
        gas += tx.gas_used
    address, more = sliced_verifier.deploy(client, sender, addresses,
                                           *verifier_layout(store, model_id, sliced, manifests), clones)
    return SlicedDeployment(address, addresses, gas + more)


def slice_manifests(store: ArtifactStore, model_id: str) -> tuple[Any, list[Any]]:
    sliced = load_sliced(store, model_id)
    return sliced, [load_manifest(store, i) for i in sliced.slices]


def sliced_spec(store: ArtifactStore, model_id: str, *, verifier: str, price: int, owner_share_bps: int,
                metadata_cid: str) -> ModelSpec:
    """The registry entry of a sliced model: its one verifier (the SlicedVerifier), the whole model's ONNX, the
    slices' verifying keys together, its manifest's digest, and the call's instance layout (the first slice's
    inputs, the last slice's outputs)."""
    fields = sliced_fields(store, model_id)
    return ModelSpec(onnx_sha256=bytes.fromhex(fields["onnx_sha256"]), vk_digest=bytes.fromhex(fields["vk_digest"]),
                     settings_hash=bytes.fromhex(fields["settings_hash"]), verifier=verifier, price=price,
                     owner_share_bps=owner_share_bps, input_instances=fields["input_instances"],
                     instance_count=fields["instance_count"], proof_mode=ProofMode(fields["proof_mode"]),
                     params_commitment=0, metadata_cid=metadata_cid)


def sliced_fields(store: ArtifactStore, model_id: str) -> dict[str, Any]:
    """The registry fields a sliced model's entry must have (``vk_digest``: sha256 of the slices' vk digests in
    order; ``settings_hash``: the sliced manifest's own digest, its CID's)."""
    sliced, manifests = slice_manifests(store, model_id)
    first, last = manifests[0], manifests[-1]
    return {"onnx_sha256": sliced.onnx.sha256,
            "vk_digest": hashlib.sha256(b"".join(bytes.fromhex(m.vk.sha256) for m in manifests)).hexdigest(),
            "settings_hash": digest_of(model_id).hex(), "input_instances": first.layout.input,
            "instance_count": first.layout.input + last.layout.output, "proof_mode": int(proof_mode(first))}


def check_sliced_entry(market: Any, model_id: str, entry: RegisteredModel) -> None:
    """A sliced model's registry entry: its fields, and a verifier whose code is the SlicedVerifier over verifiers
    whose code is each slice manifest's, or a clone of the market's shared verifier pinning the slice's VKA
    (``RegistryMismatch`` naming the first that differs)."""
    from proofmarket.chain.shared import parse_clone
    from proofmarket.onchain.registry_check import check_fields, check_shared

    client, store = market.client, market.workspace.store
    spec = entry.spec
    check_fields(model_id, entry, sliced_fields(store, model_id))
    sliced, manifests = slice_manifests(store, model_id)
    w3 = client.w3
    layout = verifier_layout(store, model_id, sliced, manifests)
    verifiers, clones = sliced_verifier.layout_of(w3, spec.verifier, model_id, *layout)
    sliced_verifier.check_kinds(client.code_at, spec.verifier, model_id, verifiers, clones)
    for k, (address, m) in enumerate(zip(verifiers, manifests, strict=True)):
        runtime = client.code_at(address)
        clone = parse_clone(runtime)
        if clone is not None:  # the slice on the shared verifier: a clone of this market's, pinning the slice's VKA
            check_shared(market, sliced.slices[k], address, *clone)
            continue
        code = store.get(m.verifier.bytecode.cid).decode().strip() if m.verifier is not None else ""
        if keccak(runtime) != creation_runtime_hash(w3, code if code.startswith("0x") else "0x" + code):
            raise RegistryMismatch(f"slice {k + 1}'s verifier of {model_id} at {address} is not the one compiled "
                                   "from its manifest", model_id=model_id, field="verifier_code")
    now = keccak(client.code_at(spec.verifier))
    if now != entry.verifier_codehash or now != sliced_verifier.built_code_hash(w3, verifiers, *layout, clones):
        raise RegistryMismatch(f"the verifier of {model_id} at {spec.verifier} is not the SlicedVerifier of its "
                               "slices", model_id=model_id, field="verifier_code")


# --- settling a call -----------------------------------------------------------------------------------------------
Estimate = Callable[[bytes, list[int]], int]  # the settling transaction's gas for (proof, instances)


def settle_args(market: Any, bundle: dict[str, Any], verifier: str, sender: LocalAccount, estimate: Estimate,
                progress: Callable[[str], None] = lambda _: None) -> tuple[bytes, list[int]]:
    """(proof, instances) the transaction settling a sliced call sends to ``verifier`` (the listing's
    SlicedVerifier): the whole proof when its verification fits one transaction (``estimate`` of it, with the client's
    margin, within the chain's ``max_tx_gas``); else a bounded sequence: the slices not recorded yet are recorded
    first (``SlicedVerifier.record`` from ``sender``, as many per transaction as fit), and the proof names them by
    their link digests. A slice recorded before (by a node that stopped half way, or by anyone) is not sent again.
    ``ChainError`` when a single slice, or the call with every slice recorded, is over the limit."""
    from proofmarket.chain.client import GAS_MARGIN
    from proofmarket.systems.ezkl.chain_form import verify_args, vka_for

    client, store = market.client, market.workspace.store
    cap = int(client.profile.max_tx_gas)
    proof, instances = verify_args(market.code_at, lambda v: sliced_verifier.slice_verifiers(client, v), store,
                                   bundle, verifier)
    if _fits(estimate, proof, instances, cap):
        return proof, instances
    verifiers, inputs, outputs, _ = sliced_verifier.layout(client, verifier)
    proofs, parts = sliced_verifier.slice_proofs(bundle)
    ids = [str(s["model"]["id"]) for s in bundle["slices"]]
    vkas = [vka_for(market.code_at, store, ids[k], verifiers[k]) for k in range(len(proofs))]
    digests = {}
    for k, p in enumerate(proofs):
        found = sliced_verifier.link_digests(p, k, inputs, outputs)
        if found is None:
            raise UsageError(f"slice {k + 1}'s proof is shorter than its link commitments", slice=k + 1)
        digests[k] = found
    todo = [k for k in range(len(proofs))
            if not sliced_verifier.is_recorded(client, verifier, sliced_verifier.record_key(k, digests[k], parts[k]))]
    progress(f"the call's {len(proofs)} slices need more gas than one transaction carries ({cap:,}): recording "
             f"{len(todo)} of them first" + (f" ({len(proofs) - len(todo)} recorded before)" if len(todo) < len(proofs)
                                              else ""))
    batch: list[int] = []
    for k in todo:  # a slice's gas alone, then as many together as fit
        gas = sliced_verifier.estimate_record(client, verifier, sender.address,
                                              ([k], [proofs[k]], [parts[k]], [vkas[k]]))
        if gas * GAS_MARGIN > cap:
            raise ChainError(f"slice {k + 1}'s verification alone needs {gas:,} gas, over the {cap:,} one "
                             "transaction may carry on this chain: compile the model in more, smaller slices",
                             slice=k + 1, gas=gas, max_tx_gas=cap)
        together = batch + [k]
        if batch and sliced_verifier.estimate_record(client, verifier, sender.address, _args(together, proofs, parts,
                                                                                              vkas)) * GAS_MARGIN > cap:
            _record(client, verifier, sender, batch, proofs, parts, vkas, progress)
            together = [k]
        batch = together
    if batch:
        _record(client, verifier, sender, batch, proofs, parts, vkas, progress)
    from proofmarket.chain.sliced_verifier import evm_args

    proof, instances = evm_args(bundle, lambda k: vkas[k], recorded=digests)
    if not _fits(estimate, proof, instances, cap):
        raise ChainError(f"settling the call needs more than the {cap:,} gas one transaction carries even with its "
                         "slices recorded", max_tx_gas=cap)
    return proof, instances


def _fits(estimate: Estimate, proof: bytes, instances: list[int], cap: int) -> bool:
    """Whether the settling transaction with this proof fits one transaction (an estimate over the node's gas cap,
    or a verifier out of gas at it, does not)."""
    from proofmarket.chain.client import GAS_MARGIN
    from proofmarket.core.errors import ContractReverted, RPCUnavailable

    try:
        return estimate(proof, instances) * GAS_MARGIN <= cap
    except ContractReverted as exc:
        if exc.details.get("error") == "VerifierOutOfGas":
            return False
        raise
    except RPCUnavailable:
        raise
    except ChainError:  # the node's own cap ("gas required exceeds allowance")
        return False


def _args(ks: list[int], proofs: list[bytes], parts: list[list[int]], vkas: list[list[bytes]]
          ) -> sliced_verifier.RecordArgs:
    return ks, [proofs[k] for k in ks], [parts[k] for k in ks], [vkas[k] for k in ks]


def _record(client: ChainClient, verifier: str, sender: LocalAccount, ks: list[int], proofs: list[bytes],
            parts: list[list[int]], vkas: list[list[bytes]], progress: Callable[[str], None]) -> None:
    tx = sliced_verifier.record(client, verifier, sender, _args(ks, proofs, parts, vkas))
    progress(f"slice(s) {', '.join(str(k + 1) for k in ks)} recorded on chain ({tx.gas_used:,} gas, "
             f"transaction {tx.tx_hash})")
