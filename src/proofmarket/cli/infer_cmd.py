"""``proofmarket infer MODEL_ID --input INPUT.json --node URL``: a paid call to a node, over the SDK.

The node answers 402 when the call costs something: the payment is signed with the keystore named by
``--keystore NAME`` (HOME/keys/NAME.json, or a path; ``proofmarket keys new --role consumer`` makes
HOME/keys/consumer.json), or on a node of the devnet with the plain key in the environment variable named by
``--key-env`` (default ``PROOFMARKET_CONSUMER_KEY``; refused off the devnet), or with anvil's dev consumer account
when ``--devnet`` is given, and capped at ``--max-amount`` atomic USDC units (default:
the model's listed price). The answer is verified locally before anything is printed (``Client.verify``:
the proof, and that it answers this request: model, input, salt, output, payment and receipt); a
mismatch exits non-zero with its error code. Proofs on a dev SRS are refused unless ``--devnet`` (on
the devnet) or ``--allow-dev-srs``. ``--no-verify`` prints the node's answer marked unverified.
Hook: ``infer_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from proofmarket.cli.common import JsonOpt
from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.core.profiles import DEVNET

DEFAULT_NODE = "http://127.0.0.1:8402"
DEFAULT_KEY_ENV = "PROOFMARKET_CONSUMER_KEY"
AutoOpt = Annotated[bool, typer.Option(
    "--auto", help="--node is a comma-separated list: call the best node by price and reputation")]
AutoRpcOpt = Annotated[str | None, typer.Option(
    "--rpc-url", envvar="PROOFMARKET_RPC_URL",
    help="with --auto: read the reputations on chain here, in your own deployment's contracts "
         "(PROOFMARKET_DEPLOYMENT_FILE); without it the cheapest node wins")]
KeystoreOpt = Annotated[str | None, typer.Option(
    "--keystore", help="sign with this consumer keystore: a NAME in HOME/keys (NAME.json) or a path; its password "
                       "from PROOFMARKET_KEYSTORE_PASSWORD_FILE, else asked")]


def register(app: typer.Typer) -> None:
    app.command("infer")(infer_cmd)


def infer_cmd(
    model_id: Annotated[str, typer.Argument(help="the model id (see the node's GET /v1/models)")],
    input: Annotated[Path, typer.Option("--input", help='{"input_data": [[...]]} or {"inputs": {"x": [...]}}')],
    node: Annotated[str, typer.Option("--node", envvar="PROOFMARKET_NODE_URL", help="the node's base URL")]
    = DEFAULT_NODE,
    key_env: Annotated[str, typer.Option("--key-env", help="environment variable holding the paying key (a node on "
                                                           "the devnet only)")] = DEFAULT_KEY_ENV,
    keystore: KeystoreOpt = None,
    devnet: Annotated[bool, typer.Option(
        "--devnet", help="on the devnet: pay with anvil's dev consumer account and accept dev-SRS proofs")] = False,
    allow_dev_srs: Annotated[bool, typer.Option(
        "--allow-dev-srs", help="accept proofs on a dev SRS off the devnet (they can be forged)")] = False,
    max_amount: Annotated[int | None, typer.Option(
        "--max-amount", help="most atomic USDC units to pay (default: the listed price)")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="write the paid proof bundle here")] = None,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="verify the answer locally against this request")] = True,
    auto: AutoOpt = False,
    rpc_url: AutoRpcOpt = None,
    scheme: Annotated[str, typer.Option(
        "--scheme", help="how to pay: exact (one EIP-3009 payment a call) or batch-settlement (a channel: the first "
                         "call deposits --deposit-calls prices, the next ones pay with vouchers; see 'proofmarket "
                         "channel')")] = "exact",
    deposit_calls: Annotated[int, typer.Option("--deposit-calls", min=1, help="batch-settlement: calls a deposit "
                                                                              "covers")] = 20,
    batch: Annotated[bool, typer.Option("--batch/--no-batch", help="--batch: let the node prove this call together "
                                        "with other callers who allowed it, in one proof (each answer its own slot; "
                                        "their public inputs and outputs are in the shared proof); --no-batch (the "
                                        "default): proven alone")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Call MODEL_ID on a node with INPUT, paying over x402 if asked; verify that the answer is the proof of
    this request and print the proven output, payment and receipt."""
    from proofmarket.sdk.client import Client

    try:
        node = choose_node(node, model_id, auto, rpc_url, max_amount, as_json)
        doc = _read_input(input)
        account = paying_account(node, key_env, devnet, keystore)
        if scheme not in ("exact", "batch-settlement"):
            raise UsageError("--scheme is exact or batch-settlement")
        with Client(node, account=account, devnet=devnet, allow_dev_srs=allow_dev_srs, scheme=scheme,
                    deposit_calls=deposit_calls) as sdk:
            result = sdk.infer(model_id, doc, max_amount=max_amount, verify=verify, batch=batch)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if out_path:
        out_path.write_text(json.dumps(result.bundle, indent=2))
    if as_json:
        emit_json({"ok": True, "mode": result.mode, "job_id": result.job_id, "model_id": result.model_id,
                   "output": result.output,
                   "bundle_cid": result.bundle_cid, "payment": result.payment, "receipt": result.receipt,
                   "salt": result.salt, "access_token": result.access_token,
                   "verified": list(result.checks) if verify else None,
                   "bundle": None if out_path else result.bundle})
        return
    if not verify:
        out.print("[bold yellow]unverified[/]: the node's answer as it came (--no-verify)")
    out.print(f"output:     {result.output}")
    out.print(f"bundle cid: {result.bundle_cid}" + (f" (written to {out_path})" if out_path else ""))
    if result.payment:
        paid_in = result.payment.get("transaction") or f"channel {result.payment.get('channel_id')}"
        out.print(f"paid:       {result.payment['amount']} atomic units by {result.payment['payer']} "
                  f"in {paid_in} ({result.payment['network']})")
    if result.receipt:
        out.print(f"receipt:    signed by {result.receipt['signer']}")
    out.print(f"mode:       {result.mode}" + ("" if result.mode == "proven" else " (signed commitments, not a proof)"))
    if verify:
        out.print("[bold green]verified[/] locally:")
        for check in result.checks:
            out.print(f"  ok  {check}")
    if result.salt:
        out.print(f"salt:       {result.salt} (keep it: it opens the input commitment)")


def choose_node(node: str, model_id: str, auto: bool, rpc_url: str | None, max_amount: int | None,
                as_json: bool) -> str:
    """``--auto``: the best of the comma-separated nodes by price and reputation (``proofmarket.sdk.routing``)."""
    urls = [u.strip() for u in node.split(",") if u.strip()]
    if not auto:
        if len(urls) != 1:
            raise UsageError("--node takes one URL (several, comma-separated, with --auto)")
        return urls[0]
    from proofmarket.sdk.routing import pick_node

    choice = pick_node(urls, model_id, rpc_url=rpc_url, max_price=max_amount)
    if not as_json:
        best = choice.best
        out.print(f"node:       {best.url} (score {best.score:.3g}: quality {best.quality:.2f} at {best.price_atomic} "
                  f"atomic units; {len(choice.ranked)} candidate(s), {len(choice.skipped)} skipped)")
    return choice.best.url


def _read_input(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the input {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(f"the input {path} is not JSON: {exc}") from exc


def paying_account(node: str, key_env: str, devnet: bool, keystore: str | None) -> Any:
    """The consumer's paying account: a keystore (``--keystore``), the dev consumer (``--devnet``), or the plain key
    in ``key_env`` for a node on the devnet only (None: no key)."""
    if keystore is not None:
        from proofmarket.chain.keystore import unlock
        from proofmarket.cli.common import settings_for

        settings = settings_for(None)
        named = Path(keystore).expanduser()
        path = named if (named.suffix == ".json" or "/" in keystore) else settings.home / "keys" / f"{keystore}.json"
        return unlock(path, settings, "consumer")
    account = _account(key_env, devnet)
    if account is not None and not devnet:
        chain = _node_chain(node)
        if chain is not None and chain != DEVNET.chain_id:
            raise UsageError(f"{key_env} holds a plain key, which pays on the devnet only; this node is on chain "
                             f"{chain}: move it into a keystore ('proofmarket keys import --role consumer --from-env "
                             f"{key_env}') and pass --keystore consumer")
    return account


def _node_chain(node: str) -> int | None:
    """The chain id the node announces (its manifest's ``chain``); None when it announces none."""
    import httpx

    try:
        doc = httpx.get(f"{node.rstrip('/')}/.well-known/ai-service.json", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return None
    chain = doc.get("chain") if isinstance(doc, dict) else None
    if not isinstance(chain, dict):
        return None
    if isinstance(chain.get("chain_id"), int):
        return int(chain["chain_id"])
    network = str(chain.get("network") or "")
    return int(network.split(":", 1)[1]) if network.startswith("eip155:") and network[7:].isdigit() else None


def _account(key_env: str, devnet: bool) -> Any:
    """The paying account: the dev consumer on ``--devnet``, else the key in ``key_env`` (None: no key)."""
    if devnet:
        from proofmarket.chain.devkeys import dev_account
        from proofmarket.onchain.accounts import DEV_ROLES

        return dev_account(DEV_ROLES["consumer"], DEVNET.chain_id)
    from proofmarket.core.settings import env_value
    secret = env_value(key_env)
    if not secret:
        return None
    from eth_account import Account

    try:
        return Account.from_key(secret.strip() if secret.strip().startswith("0x") else "0x" + secret.strip())
    except (ValueError, TypeError):  # never echo the key
        raise UsageError(f"{key_env} does not hold a valid private key (32 bytes as hex)") from None
