"""``proofmarket generate MODEL_ID --prompt TEXT``: attested text generation, locally or from a node.

Without ``--node`` the model runs in this workspace (the model compiled with ``compile --mode attested``) and
the bundle is signed with the workspace's node key. With ``--node URL`` the call goes to a node over the SDK,
paying over x402 when asked (the price is per 1,000 output tokens: ``--scheme exact`` charges the cap ``max_tokens``,
``--scheme upto`` and ``batch-settlement`` the tokens generated), and the
answer's attestation is checked before anything is printed (``--reexecute`` also re-runs it locally). A payment
still settling on chain (the node answers 202 with a job) is followed until the node delivers the answer, or
fails it with nothing charged (its error is printed).
Hook: ``generate_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from proofmarket.cli.common import HomeOpt, JsonOpt
from proofmarket.cli.infer_cmd import (
    DEFAULT_KEY_ENV,
    AutoOpt,
    AutoRpcOpt,
    KeystoreOpt,
    choose_node,
    paying_account,
)
from proofmarket.cli.output import emit_json, fail, out, progress_steps
from proofmarket.core.errors import ProofMarketError, UsageError


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)


def generate_cmd(
    model_id: Annotated[str, typer.Argument(help="an attested model's id")],
    prompt: Annotated[str, typer.Option("--prompt", help="the prompt text")],
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="most tokens to generate (<= the model's cap)")]
    = 64,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy; above 0 samples with --seed")]
    = 0.0,
    seed: Annotated[int | None, typer.Option("--seed", help="sampling seed (committed; drawn when unset)")] = None,
    node: Annotated[str | None, typer.Option("--node", envvar="PROOFMARKET_NODE_URL",
                                             help="a node's base URL; unset = run in this workspace")] = None,
    key_env: Annotated[str, typer.Option("--key-env", help="environment variable holding the paying key (a node on "
                                                           "the devnet only)")] = DEFAULT_KEY_ENV,
    keystore: KeystoreOpt = None,
    devnet: Annotated[bool, typer.Option("--devnet", help="pay with anvil's dev consumer account")] = False,
    max_amount: Annotated[int | None, typer.Option("--max-amount", help="most atomic USDC units to pay")] = None,
    reexecute: Annotated[bool, typer.Option("--reexecute", help="re-check the answer locally (needs the weights)")]
    = False,
    out_path: Annotated[Path | None, typer.Option("--out", help="write the attested bundle here")] = None,
    auto: AutoOpt = False,
    rpc_url: AutoRpcOpt = None,
    scheme: Annotated[str, typer.Option(
        "--scheme", help="how to pay: exact (the max_tokens cap is charged), upto (the tokens generated are charged; "
                         "needs 'proofmarket permit2 approve' once) or batch-settlement (a channel: the tokens "
                         "generated)")] = "exact",
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Generate text with an attested model and print it with its attestation (not a ZK proof)."""
    request = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "seed": seed}
    try:
        if node:
            from proofmarket.sdk.client import Client

            node = choose_node(node, model_id, auto, rpc_url, max_amount, as_json)
            if scheme not in ("exact", "upto", "batch-settlement"):
                raise UsageError("--scheme is exact, upto or batch-settlement")
            with Client(node, account=paying_account(node, key_env, devnet, keystore), devnet=devnet,
                        scheme=scheme) as sdk:
                result = sdk.generate(model_id, prompt, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                      max_amount=max_amount, reexecute=reexecute)
            bundle, cid, checks = result.bundle, result.bundle_cid, list(result.checks)
            payment = result.payment
        else:
            bundle, cid, checks, payment = _local(model_id, request, reexecute, home, as_json)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if out_path:
        out_path.write_text(json.dumps(bundle, indent=2))
    verdict = "reproduced" if reexecute else "signature valid, not re-executed"
    if as_json:
        emit_json({"ok": True, "mode": "attested", "model_id": model_id, "text": bundle["output"]["text"],
                   "tokens": bundle["output"]["tokens"], "finish_reason": bundle["output"]["finish_reason"],
                   "bundle_cid": cid, "payment": payment, "verdict": verdict, "checks": checks,
                   "bundle": None if out_path else bundle})
        return
    out.print(f"text:       {bundle['output']['text']!r}")
    out.print(f"tokens:     {len(bundle['output']['tokens'])} ({bundle['output']['finish_reason']}), "
              f"{len(bundle['proof']['commitments'])} activation commitment(s)")
    out.print(f"bundle cid: {cid}" + (f" (written to {out_path})" if out_path else ""))
    if payment:
        out.print(f"paid:       {payment['amount']} atomic units in {payment['transaction']}")
    out.print(f"[bold yellow]attested[/], [bold green]{verdict}[/] (an attestation, not a ZK proof)")
    for check in checks:
        out.print(f"  ok  {check}")


def _local(model_id: str, request: dict[str, Any], reexecute: bool, home: Path | None,
           as_json: bool) -> tuple[dict[str, Any], str, list[str], None]:
    from proofmarket.core.settings import Settings
    from proofmarket.systems.workspace import Workspace
    ws = Workspace(Settings(home=home) if home else Settings())
    with progress_steps(not as_json) as step:
        step("generating")
        execution = ws.attested.run(model_id, request)
        bundle, cid = execution.bundle, execution.bundle_cid
        if reexecute:
            step("re-executing")
        report = ws.verify(bundle.to_doc(), reexecute=reexecute)
    return bundle.to_doc(), cid, report.checks, None
