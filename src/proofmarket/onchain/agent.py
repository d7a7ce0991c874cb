"""The node as an ERC-8004 agent: its registration file (served at /.well-known/agent-registration.json) and
its identity on the market's IdentityRegistry (the prover account owns the agent token)."""

from __future__ import annotations

from typing import Any

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
WELL_KNOWN = "/.well-known/agent-registration.json"


def registration_file(*, name: str, base_url: str, x402: bool, models: list[dict[str, Any]],
                      agent_id: int | None = None, registry: str | None = None) -> dict[str, Any]:
    """The ERC-8004 registration file: what the node is, where to reach it, how it can be trusted; each model with
    what its answers guarantee (``verifiable``: guarantee, proof format, manifest CID, verifier contract)."""
    return {
        "type": REGISTRATION_TYPE,
        "name": name,
        "description": "proofmarket node: ML inference sold per call; proven models answer with a zero-knowledge "
                       "proof (EZKL), attested models with a signed, re-executable attestation",
        "services": [
            {"name": "web", "endpoint": f"{base_url}/dashboard"},
            {"name": "proofmarket", "endpoint": f"{base_url}/.well-known/ai-service.json", "version": "1"},
            {"name": "openapi", "endpoint": f"{base_url}/openapi.json"},
        ],
        "x402Support": x402,
        "active": True,
        "registrations": [] if agent_id is None or registry is None else
        [{"agentId": agent_id, "agentRegistry": registry}],
        "supportedTrust": ["zkml", "reputation", "crypto-economic"],
        "models": models,
    }
