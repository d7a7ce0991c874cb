"""``proofmarket verify BUNDLE``: check a bundle here (the proof, or an attested bundle's signature and bindings), in
any home: the artifacts it names are fetched by CID from ``--node`` or ``--gateway`` (each checked against its CID)
when this home does not hold them; ``--onchain`` also runs the proof through its model's verifier on a chain.

    proofmarket verify bundle.json                                  the artifacts from this home's store
    proofmarket verify bundle.json --node https://node.example     ... fetched from that node when missing
    proofmarket verify bundle.json --gateway https://ipfs.example  ... or from an IPFS trustless gateway
    proofmarket verify bundle.json --onchain [--rpc-url URL]       and verifyProof on the registry's verifier
    proofmarket verify tool-result.json                             an MCP tool result: the proof in its _meta
                                                                    (systems/proof_meta.py), every field checked
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from proofmarket.cli.common import HomeOpt, JsonOpt
from proofmarket.cli.output import emit_json, fail, out, read_json
from proofmarket.core.errors import ArtifactNotFound, ProofMarketError, UsageError

WHERE_FROM = ("give --node URL (a node that serves the model) or --gateway URL (an IPFS trustless gateway) to fetch "
              "them by CID, or --car FILE (the owner's 'proofmarket export')")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_cmd)


def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="a proof bundle JSON file (proven or attested), or an MCP "
                                                         "tool result carrying one in its _meta")],
    car: Annotated[Path | None, typer.Option("--car", help="import the model's public artifacts from this CAR first")]
    = None,
    node: Annotated[str | None, typer.Option("--node", help="fetch the artifacts the bundle names from this node "
                                                            "(by CID, each checked) when this home lacks them")] = None,
    gateway: Annotated[list[str] | None, typer.Option("--gateway", help="an IPFS trustless gateway to fetch them from "
                                                                        "(repeatable; after --node)")] = None,
    onchain: Annotated[bool, typer.Option("--onchain", help="also run the proof through the verifier its model's "
                                                            "registry listing names (an eth_call, with its gas)")]
    = False,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", envvar="PROOFMARKET_RPC_URL", help="with --onchain: "
                                                "the chain's RPC (default: this home's devnet)")] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="with --onchain: the ModelRegistry address "
                                                 "(default: this home's deployment record for that chain)")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="with --onchain: the listing of this owner, where "
                                                              "several list the model")] = None,
    reexecute: Annotated[bool, typer.Option(
        "--reexecute", help="attested bundles: re-run one prefill pass over prompt + output with the weights and "
                            "check every chunk's commitment and every token")] = False,
    model_dir: Annotated[Path | None, typer.Option(
        "--model-dir", help="with --reexecute: the model directory to re-execute with (default: the files the "
                            "manifest names, from the store)")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="with --reexecute: torch threads")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Verify a proof bundle (the ZK proof), or an attested bundle (signature, hashes and bindings; with
    --reexecute also the commitments); with --onchain also on a chain. Exit 0 valid or reproduced, 1 invalid or
    differs, 2 usage or missing artifact."""
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace

    ws = Workspace(Settings(home=home) if home else Settings())
    try:
        doc = read_json(bundle, "bundle")
        meta = _tool_meta(doc)
        if meta is not None:  # an MCP tool result: the proof in its _meta, the artifacts from the node it names
            doc, node = meta["bundle"], node or str(meta["node"])
        if car:
            ws.import_car(car)
        model_id = str(((doc.get("model") if isinstance(doc, dict) else None) or {}).get("id") or "")
        if (node or gateway) and model_id and not ws.store.has(model_id):
            from proofmarket.cli.import_cmd import fetch_model

            fetch_model(ws, model_id, node, gateway or [])
        try:
            report = ws.verify(doc, reexecute=reexecute, model_dir=model_dir, threads=threads)
        except ArtifactNotFound as exc:
            raise ArtifactNotFound(f"{exc.message}: this home does not hold the model's artifacts; {WHERE_FROM}",
                                   **exc.details) from None
        chain = _on_chain(ws, doc, rpc_url, registry, owner) if onchain else None
        unchecked = _check_meta(meta, report, chain) if meta is not None else []
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    finally:
        ws.close()
    if as_json:
        emit_json({"ok": True, "valid": True, "mode": report.mode, "model_id": report.model_id,
                   "output": report.output if report.mode == "proven" else report.text,
                   "reexecuted": report.reexecuted, "verdict": _verdict(report), "srs": report.srs_kind,
                   "checks": report.checks, "onchain": chain, "unchecked": unchecked})
        return
    for note in unchecked:
        out.print(f"[yellow]not checked[/]: {note}")
    if report.mode == "attested":
        out.print(f"[bold yellow]attested[/], [bold green]{_verdict(report)}[/]: model {report.model_id}")
        for check in report.checks:
            out.print(f"  ok  {check}")
        out.print(f"output: {report.text!r}")
        return
    out.print(f"proven, [bold green]valid[/]: model {report.model_id}")
    for check in report.checks:
        out.print(f"  ok  {check}")
    if chain is not None:
        batch = f" (batch of {chain['batch_size']})" if chain["batch_size"] else ""
        out.print(f"  ok  on chain {chain['chain_id']}: verifyProof on {chain['verifier']}{batch} -> true "
                  f"({chain['gas']:,} gas), the model's own verifier (its manifest's code) of listing "
                  f"{chain['listing'][:10]}... by {chain['owner']} on the registry {chain['registry']}")
        others = [o for o in chain["owners"] if o.lower() != str(chain["owner"]).lower()]
        if others:
            out.print(f"  note: {', '.join(others)} list this model with its own verifier too (--owner picks one)")
    out.print(f"output: {report.output}")
    if report.srs_kind == "dev":
        out.print("[yellow]note[/]: this proof uses a dev SRS (testing only; not for real money)")


def _on_chain(ws: Any, doc: Any, rpc_url: str | None, registry: str | None, owner: str | None) -> dict[str, Any]:
    from proofmarket.chain import ChainClient, load_deployment
    from proofmarket.chain.contracts import ModelRegistry
    from proofmarket.chain.onchain_verify import verify_on_chain
    from proofmarket.onchain.service import connect, deployment_path

    client = ChainClient(rpc_url) if rpc_url else connect(ws.settings)
    from_block = 0
    if registry is None:
        path = deployment_path(ws.settings, client.chain_id)
        deployment = load_deployment(path)
        if deployment is None or "ModelRegistry" not in deployment.contracts:
            raise UsageError(f"no market deployment of chain {client.chain_id} is recorded in {path}: give "
                             "--registry ADDRESS (the ModelRegistry)", chain_id=client.chain_id)
        listed = deployment.contracts["ModelRegistry"]
        registry, from_block = listed.address, listed.block
    from proofmarket.chain.sliced_verifier import slice_verifiers
    from proofmarket.systems.ezkl import chain_form

    return verify_on_chain(client, ModelRegistry(client, registry), doc, owner=owner, from_block=from_block,
                           own=own_verifier_check(client, ws.store, str(doc["model"]["id"])),
                           calldata=lambda verifier: chain_form.calldata(
                               client.code_at, lambda v: slice_verifiers(client, v), ws.store, doc, verifier),
                           in_steps=chain_form.in_steps(client, ws.store, doc)).to_json()


def own_verifier_check(client: Any, store: Any, model_id: str) -> Any:
    """The check that a listing's verifier is the model's own, from the manifest this home holds (the bundle was
    verified against it): a sliced model's, the SlicedVerifier over its slices' own."""
    from proofmarket.sdk.own_verifier import own_check, own_sliced_check
    from proofmarket.systems.ezkl.sliced import is_sliced_model
    from proofmarket.systems.ezkl.verify import load_manifest

    if is_sliced_model(store, model_id):
        return own_sliced_check(client.w3, store, model_id)
    return own_check(client.w3, store, load_manifest(store, model_id), model_id)


def _tool_meta(doc: Any) -> dict[str, Any] | None:
    """The ``_meta`` proof of an MCP tool result (``systems/proof_meta.py``), or None: the file is a bundle."""
    from proofmarket.systems import proof_meta

    if isinstance(doc, dict) and "_meta" in doc and "model" not in doc:
        return proof_meta.read(doc)
    return None


def _check_meta(meta: dict[str, Any], report: Any, chain: dict[str, Any] | None) -> list[str]:
    """Every ``_meta`` field held against the verified bundle (and the verifier against the chain's, with
    --onchain); what was not checked, in words."""
    from proofmarket.systems import proof_meta

    report.checks.extend(proof_meta.check_fields(meta, report.model_id, report.mode))
    verifier = meta.get("verifier")
    if not verifier:
        return []
    if chain is None:
        return [f"the verifier _meta names ({verifier.get('address')} on chain {verifier.get('chainId')}): give "
                "--onchain to run the proof through the registry's verifier and compare"]
    report.checks.append(proof_meta.check_verifier(meta, chain))
    return []


def _verdict(report: Any) -> str:
    if report.mode == "proven":
        return "verified"
    return "reproduced" if report.reexecuted else "signature valid, not re-executed"
