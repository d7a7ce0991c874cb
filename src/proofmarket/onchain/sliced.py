"""A sliced model's verifiers on a chain: each slice's own EZKL verifier (from its manifest's bytecode), then the
SlicedVerifier over them (``chain/sliced_verifier.py``): the one address a listing of the model names."""

from __future__ import annotations

import json
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from proofmarket.chain import sliced_verifier
from proofmarket.chain.artifacts import Artifact
from proofmarket.chain.client import ChainClient
from proofmarket.core.errors import UsageError
from proofmarket.store import ArtifactStore
from proofmarket.systems.ezkl.sliced import load_sliced
from proofmarket.systems.ezkl.verify import load_manifest


@dataclass(frozen=True)
class SlicedDeployment:
    address: str  # the SlicedVerifier: the model's one verifier
    slices: list[str]  # each slice's own verifier, in order
    gas_used: int  # every deployment's gas together


def deploy_sliced(client: ChainClient, sender: LocalAccount, store: ArtifactStore, model_id: str) -> SlicedDeployment:
    """Deploy the sliced model ``model_id``'s slice verifiers and its SlicedVerifier over them."""
    sliced = load_sliced(store, model_id)
    manifests = [load_manifest(store, i) for i in sliced.slices]
    addresses, gas = [], 0
    for k, m in enumerate(manifests):
        if m.verifier is None:
            raise UsageError(f"slice {k + 1} of model {model_id} has no Solidity verifier")
        artifact = Artifact(name=f"Halo2Verifier({sliced.name} slice {k + 1})",
                            abi=json.loads(store.get(m.verifier.abi.cid)),
                            bytecode=store.get(m.verifier.bytecode.cid).decode().strip(), deployed_bytecode="")
        address, tx = client.deploy(artifact, sender)
        addresses.append(address)
        gas += tx.gas_used
    address, more = sliced_verifier.deploy(client, sender, addresses, [m.layout.input for m in manifests],
                                           [m.layout.output for m in manifests])
    return SlicedDeployment(address, addresses, gas + more)
