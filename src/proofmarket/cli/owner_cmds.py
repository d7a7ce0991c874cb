"""CLI commands for model owners: list a compiled model on the registry, sell it or stop, change its price,
and read what the market paid.

    proofmarket model register MODEL_ID --price USDC [--owner-share BPS]
    proofmarket model register MODEL_ID --node URL          a listing uploaded to a node, under your key
    proofmarket model upload MODEL.onnx --sample FILE --node URL --price USDC [--register]
    proofmarket model activate|deactivate MODEL_ID;  proofmarket model price MODEL_ID USDC
    proofmarket earnings [--address ADDR]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proofmarket.cli.common import Run, checked_address, command, tx_json
from proofmarket.cli.groups import group
from proofmarket.cli.output import out
from proofmarket.core.errors import UsageError

model_app = group(help="List compiled models on the market.", no_args_is_help=True)
ModelIdArg = Annotated[str, typer.Argument(help="a model id you registered")]
# the owner's signing and chain for a listing on a node (model register --node, model upload)
RpcUrlOpt = Annotated[str | None, typer.Option("--rpc-url", envvar="PROOFMARKET_RPC_URL", help="your RPC for the "
                                               "on-chain registration (default: this home's chain)")]
KeyEnvOpt = Annotated[str, typer.Option("--key-env", help="the variable holding the owner's key")]
DevnetOpt = Annotated[bool, typer.Option("--devnet", help="sign with the devnet's dev owner")]


@command(model_app, "register")
def model_register(
    run: Run,
    model_id: Annotated[str, typer.Argument(help="a model id printed by compile, or of a listing uploaded to --node")],
    price: Annotated[str | None, typer.Option("--price", help="price per inference in USDC, e.g. 0.25 (a model "
                                                              "compiled here; an uploaded listing has its price)")]
    = None,
    owner_share: Annotated[int, typer.Option("--owner-share", help="owner's share of the price, basis points")]
    = 7_000,
    metadata: Annotated[str | None, typer.Option(help="metadata CID (default: the model id)")] = None,
    kind: Annotated[str, typer.Option(
        "--verifier", help="own: deploy the model's own verifier (~3M gas once, the cheapest verification per call); "
        "shared: list it on the chain's shared verifier (a VKA registration and a clone, ~0.3M gas; each "
        "verification ~100k gas dearer: compile prints both)")] = "own",
    node: Annotated[str | None, typer.Option("--node", help="a listing you uploaded to this node (web form, SDK "
                                                            "list_model): deploy its verifier and register it under "
                                                            "your key, from the node's plan")] = None,
    rpc_url: RpcUrlOpt = None,
    key_env: KeyEnvOpt = "PROOFMARKET_OWNER_KEY",
    devnet: DevnetOpt = False,
) -> None:
    """Deploy the model's verifier (once) and its batch verifiers, and list the model on the registry at PRICE; with
    --node, list a model you uploaded there (its price is the listing's), signed by your key."""
    from proofmarket.onchain import format_usdc

    if node is not None:
        _register_uploaded(run, model_id, node, rpc_url, key_env, devnet)
        return
    if price is None:
        raise UsageError("give --price (a model compiled here) or --node URL (a listing you uploaded there)")
    with run.market() as market:
        reg = market.register_model(model_id, price, owner_share, metadata_cid=metadata, verifier=kind)
    verifier = reg.verifier
    run.done({"model_id": reg.model_id, "model_key": reg.model_key, "action": reg.action,
              "owner": reg.owner, "verifier": reg.spec.verifier, "price": reg.spec.price,
              "owner_share_bps": reg.spec.owner_share_bps, "proof_mode": int(reg.spec.proof_mode),
              "input_instances": reg.spec.input_instances, "params_commitment": hex(reg.spec.params_commitment),
              "verifier_gas": verifier.gas_used if verifier else None,
              "shared_verifier": bool(verifier and verifier.shared),
              "batch_verifiers": {str(k): v for k, v in reg.batch_verifiers.items()}, "tx": tx_json(reg.tx)})
    if run.as_json:
        return
    out.print(f"model {reg.model_id}: {reg.action}, price {format_usdc(reg.spec.price)} USDC, owner share "
              f"{reg.spec.owner_share_bps} bps")
    out.print(f"  model key {reg.model_key}, owner {reg.owner}")
    if verifier is not None:
        how = "reused" if verifier.reused else f"deployed ({verifier.gas_used:,} gas)"
        out.print(f"  {'shared verifier (a clone pinning its VKA)' if verifier.shared else 'verifier'} "
                  f"{verifier.address} {how}")
    for size, address in reg.batch_verifiers.items():
        out.print(f"  batch verifier of {size} calls {address} (fulfillBatch)")
    if reg.tx is not None:
        out.print(f"  tx {reg.tx.tx_hash} ({reg.tx.gas_used:,} gas)")


@command(model_app, "upload")
def model_upload(
    run: Run,
    model: Annotated[Path, typer.Argument(help="the ONNX file (weights files it names beside it are sent too)")],
    sample: Annotated[Path, typer.Option("--sample", help="sample inputs: JSON, .npy, .npz or CSV")],
    node: Annotated[str, typer.Option("--node", envvar="PROOFMARKET_NODE_URL", help="the node to list it on")],
    price: Annotated[str, typer.Option("--price", help="price per inference in USDC, e.g. 0.25")],
    name: Annotated[str, typer.Option("--name", help="its name in the catalogue (default: the file name)")] = "",
    task: Annotated[str | None, typer.Option("--task", help="classification or regression (the accuracy checks)")]
    = None,
    register_too: Annotated[bool, typer.Option("--register", help="once compiled, register the listing on chain "
                                                                  "under your key (--rpc-url)")] = False,
    rpc_url: RpcUrlOpt = None,
    key_env: KeyEnvOpt = "PROOFMARKET_OWNER_KEY",
    devnet: DevnetOpt = False,
) -> None:
    """List MODEL on a node as its owner (a listing request signed by your key, no admin token): the node checks and
    compiles it (its steps are shown as they happen); with --register, the listing is then registered on chain."""
    from proofmarket.cli.money_cmds import owner_account
    from proofmarket.cli.output import progress_steps
    from proofmarket.core.units import parse_price
    from proofmarket.sdk.client import Client

    if not model.is_file():
        raise UsageError(f"there is no model file at {model}")
    if task is not None and task not in ("classification", "regression"):
        raise UsageError(f"--task is classification or regression, not {task!r}")
    account = owner_account(key_env, devnet, "a listing is signed by its owner")
    metadata = {"task": task} if task else None
    with Client(node, account=account) as sdk:
        job = sdk.list_model(model, sample, price_atomic=parse_price(price), name=name or model.stem,
                             metadata=metadata)
        with progress_steps(not run.as_json) as step:
            model_id = sdk.wait_listing(job, progress=step)
        registered = None
        if register_too:
            if rpc_url is None:
                with run.market() as market:
                    rpc_url = market.client.rpc_url
            registered = sdk.register_listing(model_id, rpc_url)
    run.done({"model_id": model_id, "job_id": job["id"], "registered": registered},
             f"model {model_id}: compiled and listed on {node} (job {job['id']})",
             *([f"  registered on chain ({registered['onchain_id']})"] if registered else []))


@command(model_app, "activate")
def model_activate(run: Run, model_id: ModelIdArg) -> None:
    """Sell the model again: nodes serving it take calls and escrow requests for it."""
    _set_active(run, model_id, True)


@command(model_app, "deactivate")
def model_deactivate(run: Run, model_id: ModelIdArg) -> None:
    """Stop selling the model: nodes answer model_inactive and the market takes no new requests for it
    (open requests are still fulfilled or refunded)."""
    _set_active(run, model_id, False)


def _set_active(run: Run, model_id: str, active: bool) -> None:
    with run.market() as market:
        tx = market.set_active(model_id, active)
        onchain = "0x" + market.onchain_id(model_id).hex()
    state = "active" if active else "inactive"
    run.done({"model_id": model_id, "onchain_id": onchain, "active": active, "changed": tx is not None,
              "tx": tx_json(tx)},
             f"model {model_id}: {state}" + ("" if tx is not None else " (no change)"),
             *([f"  tx {tx.tx_hash} ({tx.gas_used:,} gas)"] if tx is not None else []))


@command(model_app, "price")
def model_price(
    run: Run,
    model_id: ModelIdArg,
    price: Annotated[str, typer.Argument(help="new price per inference in USDC, e.g. 0.25")],
) -> None:
    """Change the model's price on the registry: nodes sell at it from their next call."""
    from proofmarket.onchain import format_usdc

    with run.market() as market:
        atomic, tx = market.set_price(model_id, price)
    run.done({"model_id": model_id, "price": atomic, "changed": tx is not None, "tx": tx_json(tx)},
             f"model {model_id}: price {format_usdc(atomic)} USDC" + ("" if tx is not None else " (no change)"),
             *([f"  tx {tx.tx_hash} ({tx.gas_used:,} gas)"] if tx is not None else []))


def earnings_cmd(
    run: Run,
    address: Annotated[str | None, typer.Option(help="the owner or prover address (default: this owner account)")]
    = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="also show x402 money not released yet for this model id (repeatable; default: every "
                        "model compiled in HOME)")] = None,
    node: Annotated[str | None, typer.Option("--node", envvar="PROOFMARKET_NODE_URL", help="read the node's book "
                                             "too (every rail: owed, in flight, paid), signed by the owner's key")]
    = None,
    key_env: Annotated[str, typer.Option("--key-env", help="with --node: the variable holding the owner's key")]
    = "PROOFMARKET_OWNER_KEY",
    devnet: Annotated[bool, typer.Option("--devnet", help="with --node: sign with the devnet's dev owner")] = False,
) -> None:
    """What an owner or prover earned on the market (escrow and x402 splits), what it is owed, what is still held;
    with --node, the node's book over every rail (credits, passes, channels, x402), signed by the owner."""
    if node is not None:
        from proofmarket.cli.money_cmds import node_earnings

        node_earnings(node, key_env, devnet, run.as_json)
        return
    from proofmarket.onchain import format_usdc

    checked = checked_address(address) if address else None
    with run.market() as market:
        who = checked or market.accounts.owner.address
        ids = model if model is not None else [str(m["id"]) for m in market.workspace.models()]
        earned = market.earnings(who, ids)
    run.done(earned.to_json(),
             f"{earned.address}: earned {format_usdc(earned.earned)} USDC on this market, owed "
             f"{format_usdc(earned.owed)} USDC (paid by 'proofmarket withdraw'), balance {format_usdc(earned.balance)} "
             "USDC",
             *(f"  not released yet: {format_usdc(p['amount'])} USDC for {p['model_id']} in {p['splitter']}"
               for p in earned.pending),
             f"platform balance {format_usdc(earned.platform_balance)} USDC")


def withdraw_cmd(
    run: Run,
    address: Annotated[list[str] | None, typer.Option(
        "--address", help="an owner or prover address to pay (repeatable; default: this owner account); the money "
                          "goes to the address itself, whoever sends the transaction")] = None,
) -> None:
    """Pay out what the market owes: escrow fulfilments credit the owner's and the prover's shares on chain,
    and this sends them (one transaction for every address given)."""
    from proofmarket.onchain import format_usdc

    accounts = [checked_address(a) for a in address] if address else None
    with run.market() as market:
        who = accounts or [market.accounts.owner.address]
        owed = {a: market.market.owed(a) for a in who}
        if not any(owed.values()):
            raise UsageError(f"the market owes nothing to {', '.join(who)}")
        payout = market.withdraw(who)
    run.done({"paid": {a: str(v) for a, v in payout.paid.items()}, "total": str(payout.total),
              "tx": payout.tx.tx_hash, "gas_used": payout.tx.gas_used},
             *(f"{a}: paid {format_usdc(v)} USDC" for a, v in payout.paid.items()),
             f"  tx {payout.tx.tx_hash} ({payout.tx.gas_used:,} gas)")


def _register_uploaded(run: Run, model_id: str, node: str, rpc_url: str | None, key_env: str, devnet: bool) -> None:
    from proofmarket.cli.money_cmds import owner_account
    from proofmarket.sdk.client import Client

    account = owner_account(key_env, devnet, "registering a listing")
    if rpc_url is None:
        with run.market() as market:
            rpc_url = market.client.rpc_url
    with Client(node, account=account) as sdk:
        done = sdk.register_listing(model_id, rpc_url)
    what = "listed on chain" if done["txs"] else "listed already"
    lines = [f"model {model_id}: {what} under {account.address} ({done['onchain_id']})"]
    if done["verifier"]:
        lines.append(f"  verifier {done['verifier']} deployed")
    run.done(done, *lines, *(f"  tx {tx}" for tx in done["txs"]))
