"""Verify an MCP tool result from its ``_meta`` alone (``proofmarket.systems.proof_meta``): an agent that called a
model tool on any MCP server holds the result, nothing else.

    from proofmarket.sdk.tool_results import verify_tool_result
    checked = verify_tool_result(result)          # an mcp CallToolResult, or its JSON
    checked.report.output, checked.report.checks, checked.unchecked

The bundle is verified by its own rules (the SDK's ``verify``; the public artifacts it names fetched by CID from the
result's ``node``, each checked against its CID), then every ``_meta`` field is held against it. The verifier
contract is checked only on a chain: with ``rpc_url`` (yours), the proof runs through the verifier the registry
lists for the model and that contract must be the one ``_meta`` names; without it, ``unchecked`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofmarket.core.errors import AnswerMismatch
from proofmarket.systems import proof_meta
from proofmarket.systems.port import VerifyReport


@dataclass
class ToolResultCheck:
    report: VerifyReport
    meta: dict[str, Any]
    unchecked: list[str] = field(default_factory=list)  # fields of _meta this check did not hold, and why


def verify_tool_result(result: Any, *, cache_dir: Path | None = None, devnet: bool = False,
                       allow_dev_srs: bool = False, rpc_url: str | None = None, registry: str | None = None,
                       gateways: tuple[str, ...] = ()) -> ToolResultCheck:
    """Verify a tool result's proof from its ``_meta``; raise ``UsageError`` (no proof there), ``AnswerMismatch``
    (a field the bundle contradicts) or the verification's own error."""
    from proofmarket.sdk.client import Client

    meta = proof_meta.read(result)
    unchecked: list[str] = []
    with Client(str(meta["node"]), cache_dir=cache_dir, devnet=devnet, allow_dev_srs=allow_dev_srs,
                gateways=list(gateways)) as client:
        report = client.verify(meta["bundle"])
        report.checks.extend(proof_meta.check_fields(meta, report.model_id, report.mode))
        verifier = meta.get("verifier")
        if verifier and rpc_url:
            found = client.verify_on_chain(meta["bundle"], rpc_url, registry=registry)
            said = (int(verifier.get("chainId") or 0), str(verifier.get("address") or "").lower())
            if said != (int(found["chain_id"]), str(found["verifier"]).lower()):
                raise AnswerMismatch(f"the _meta proof names verifier {said[1]} on chain {said[0]}; the registry "
                                     f"lists {found['verifier']} on chain {found['chain_id']}", check="verifier")
            report.checks.append(f"verifyProof on chain {found['chain_id']} by {found['verifier']}, the verifier "
                                 f"_meta names and the registry lists for this model: true ({found['gas']:,} gas)")
        elif verifier:
            unchecked.append(f"verifier {verifier.get('address')} on chain {verifier.get('chainId')}: not checked "
                             "(give an RPC URL to run the proof through it)")
    return ToolResultCheck(report, meta, unchecked)
