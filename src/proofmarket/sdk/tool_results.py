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


def verify_tool_result(result: Any, *, model_id: str | None = None, inputs: Any = None,
                       cache_dir: Path | None = None, devnet: bool = False, allow_dev_srs: bool = False,
                       rpc_url: str | None = None, registry: str | None = None,
                       gateways: tuple[str, ...] = ()) -> ToolResultCheck:
    """Verify a tool result's proof from its ``_meta``; raise ``UsageError`` (no proof there), ``AnswerMismatch``
    (a field the bundle contradicts, or a body that is not the proven answer) or the verification's own error.
    ``model_id`` and ``inputs``: the model the agent called and the input it sent (a proven bundle's model and
    proven input are then held against them; without them ``unchecked`` says so). With ``rpc_url`` the verifier is
    checked on chain through ``registry`` (yours: the node's own registry is never taken from the result)."""
    from proofmarket.sdk.client import Client

    meta = proof_meta.read(result)
    unchecked: list[str] = []
    with Client(str(meta["node"]), cache_dir=cache_dir, devnet=devnet, allow_dev_srs=allow_dev_srs,
                gateways=list(gateways)) as client:
        if proof_meta.spec_mode(meta["bundle"]) == "proven" and (model_id is not None or inputs is not None):
            report = client.verify(meta["bundle"], model_id=model_id, inputs=inputs)
        else:
            report = client.verify(meta["bundle"])
            if model_id is not None and report.model_id != model_id:
                raise AnswerMismatch(f"the proof is of model {report.model_id}, not of {model_id}", check="model_id")
        if inputs is None:
            unchecked.append("the proven input was not compared with the one you sent (give inputs=)")
        report.checks.extend(proof_meta.check_fields(meta, report.model_id, report.mode))
        report.checks.extend(_check_body(result, report))
        verifier = meta.get("verifier")
        if verifier and rpc_url and not registry:
            unchecked.append("the verifier: give registry= (yours) with rpc_url to check it on chain")
        elif verifier and rpc_url:
            found = client.verify_on_chain(meta["bundle"], rpc_url, registry=registry)
            report.checks.append(proof_meta.check_verifier(meta, found))
        elif verifier:
            unchecked.append(f"verifier {verifier.get('address')} on chain {verifier.get('chainId')}: not checked "
                             "(give an RPC URL to run the proof through it)")
    return ToolResultCheck(report, meta, unchecked)


def _check_body(result: Any, report: VerifyReport) -> list[str]:
    """The result's body (``structuredContent``: what the agent reads) shows the verified output."""
    if hasattr(result, "model_dump"):
        result = result.model_dump(by_alias=True, mode="json")
    body = (result or {}).get("structuredContent") if isinstance(result, dict) else None
    if not isinstance(body, dict):
        return []
    if report.mode == "proven" and "output" in body and body["output"] != report.output:
        raise AnswerMismatch("the tool result's output is not the one its proof backs", check="output")
    if report.text is not None and "text" in body and body["text"] != report.text:
        raise AnswerMismatch("the tool result's text is not the one its attestation backs", check="text")
    return ["the tool result's body shows the verified output"]
