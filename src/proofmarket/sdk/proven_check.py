"""What a payer checks on chain (its own RPC) before it signs an x402 ``proven`` payment: the verifiers that could
settle it are the model's own.

The market the payer trusts names its registry (immutable); the listing the terms name (``extra.modelId``) must be of
the model asked for and active, and its verifier, and every batch verifier it registered, must be the code compiled
from the model's manifest (``own_code_hash``; a sliced model's: the SlicedVerifier over its slices' own). A node
naming a listing whose verifier answers true to anything (its own listing of the same model, or a batch verifier
registered for it) is refused before anything is signed.
"""

from __future__ import annotations

from typing import Any

from proofmarket.core.errors import RegistryMismatch


def check_proven_terms(client: Any, model_id: str, requirements: Any, market: str, rpc_url: str) -> str:
    """Raise ``RegistryMismatch`` unless the terms' listing settles only with the model's own verifiers; returns the
    listing's on-chain id. ``client``: the SDK client (the manifest and artifacts, fetched by CID)."""
    from proofmarket.chain.client import ChainClient
    from proofmarket.chain.commitments import model_key
    from proofmarket.chain.contracts import ModelRegistry
    from proofmarket.chain.market import InferenceMarket

    extra = requirements.extra or {}
    if str(extra.get("model")) != model_id:
        raise RegistryMismatch(f"the proven terms are for model {extra.get('model')}, not {model_id}",
                               model_id=model_id, field="model")
    chain = ChainClient(rpc_url)
    registry = InferenceMarket(chain, market).registry()  # the trusted market's own (immutable) registry
    onchain_id = bytes.fromhex(str(extra.get("modelId", "")).removeprefix("0x"))
    owner, verifier, _price, _share, _inputs, _count, active, _params = registry._call("terms", onchain_id)
    if bytes(registry._call("modelIdOf", owner, model_key(model_id))) != onchain_id:
        raise RegistryMismatch(f"the listing the terms name is not a listing of {model_id}", model_id=model_id,
                               field="onchain_id")
    if not active:
        raise RegistryMismatch(f"the listing of {model_id} the terms name is not active", model_id=model_id,
                               field="active")
    from proofmarket.store import LocalStore
    from proofmarket.systems.ezkl.sliced import is_sliced_model

    store = LocalStore(client.cache_dir)

    def fetch(cid: str) -> None:
        client._fetch_artifact(store, cid)

    fetch(model_id)
    if is_sliced_model(store, model_id):  # the SlicedVerifier over each slice's own verifier, and no batch one
        from proofmarket.sdk.own_verifier import own_sliced_check

        check = own_sliced_check(chain.w3, store, model_id, fetch=fetch)
    else:
        from proofmarket.sdk.own_verifier import own_check

        check = own_check(chain.w3, store, client._manifest(model_id)[1], model_id, fetch=fetch)
    check(str(verifier), None)
    for batch in ModelRegistry.batch_verifiers(registry, onchain_id):
        check(str(batch.address), batch.size)
    return "0x" + onchain_id.hex()
