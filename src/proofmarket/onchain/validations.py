"""ERC-8004 validation records of this node's settled, proven work, answered by the ZkValidator from chain
state: an escrow request the market fulfilled (100) or rejected (0), or an x402 call's proof re-verified by the
model's registered verifier. The evidence URI names the bundle CID and the receipt (the fulfil transaction, or
the paid bundle that carries the node's signed receipt). Skipped (None) when the node has no agent identity."""

from __future__ import annotations

import logging
from typing import Any

from proofmarket.core.errors import ContractReverted

log = logging.getLogger("proofmarket.validations")


def evidence_uri(bundle_cid: str, receipt: str) -> str:
    return f"ipfs://{bundle_cid}#receipt={receipt}"


def record_escrow(market: Any, request_id: int, bundle_cid: str, fulfil_tx: str) -> dict[str, Any] | None:
    """Ask the ZkValidator to validate escrow request ``request_id`` and let it answer. Returns the status."""
    registries = market.erc8004
    agent_id = market.agent_id() if registries is not None else None
    if agent_id is None:
        return None
    prover = market.accounts.prover
    request_hash = registries.zk.request_hash(request_id)
    registries.validation.request(registries.zk.address, agent_id, evidence_uri(bundle_cid, fulfil_tx), request_hash,
                                  prover)
    registries.zk.validate_request(request_id, prover)
    status: dict[str, Any] = registries.validation.status(request_hash)
    return {**status, "request_hash": "0x" + request_hash.hex()}


def record_proof(market: Any, model_key: bytes, proof: bytes, instances: list[int], bundle_cid: str,
                 receipt: str) -> dict[str, Any] | None:
    """Ask the ZkValidator to verify an x402 call's proof with the model's registered verifier (a shared verifier
    takes the model's VKA with the proof: ``chain_proof``)."""
    registries = market.erc8004
    agent_id = market.agent_id() if registries is not None else None
    if agent_id is None:
        return None
    prover = market.accounts.prover
    model_id = str(market.workspace.store.get_json(bundle_cid)["model"]["id"])
    proof = market.chain_proof(model_id, market.registry.get_model(model_key).spec.verifier, proof)
    request_hash = registries.zk.proof_hash(model_key, proof, instances)
    registries.validation.request(registries.zk.address, agent_id, evidence_uri(bundle_cid, receipt), request_hash,
                                  prover)
    registries.zk.validate_proof(model_key, proof, instances, prover)
    status: dict[str, Any] = registries.validation.status(request_hash)
    return {**status, "request_hash": "0x" + request_hash.hex()}


def record_court(market: Any, validator: Any, request_id: int, bundle_cid: str,
                 commit_tx: str) -> dict[str, Any] | None:
    """Ask the CourtValidator to validate a settled AttestationCourt request and let it answer (100 paid, 0
    slashed). The evidence URI names the attested bundle and the commitment transaction."""
    registries = market.erc8004
    agent_id = market.agent_id() if registries is not None else None
    if agent_id is None:
        return None
    node = market.accounts.prover
    request_hash = validator.request_hash(request_id)
    try:
        registries.validation.status(request_hash)  # asked already (a settle retried after a crash)
    except ContractReverted:
        registries.validation.request(validator.address, agent_id, evidence_uri(bundle_cid, commit_tx), request_hash,
                                      node)
    validator.validate(request_id, node)
    status: dict[str, Any] = registries.validation.status(request_hash)
    return {**status, "request_hash": "0x" + request_hash.hex()}
