"""CLI commands for the on-chain market: a thin shell over ``proofmarket.market``.

    proofmarket chain up|down|status|deploy
    proofmarket model register MODEL_ID --price USDC [--owner-share BPS]
    proofmarket model activate|deactivate MODEL_ID;  proofmarket model price MODEL_ID USDC
    proofmarket earnings [--address ADDR]
    proofmarket request MODEL_ID --input INPUT.json [--salt ...]
    proofmarket fulfill REQUEST_ID
    proofmarket refund REQUEST_ID

Amounts print in USDC; ``--json`` gives atomic units (6 decimals) for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError, from_code
from proofmarket.core.settings import Settings
from proofmarket.systems.ezkl.profile import SALT_BITS, SALT_ELEMENTS

if TYPE_CHECKING:
    from proofmarket.market import Market

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]
HomeOpt = Annotated[Path | None, typer.Option("--home", envvar="PROOFMARKET_HOME",
                                              help="data folder (default ~/.proofmarket)")]

chain_app = typer.Typer(help="The chain: a local devnet (anvil) and the market contracts.", no_args_is_help=True)
model_app = typer.Typer(help="List compiled models on the market.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the market commands to the proofmarket CLI."""
    app.add_typer(chain_app, name="chain")
    app.add_typer(model_app, name="model")
    app.command("request")(request_cmd)
    app.command("fulfill")(fulfill_cmd)
    app.command("refund")(refund_cmd)
    app.command("earnings")(earnings_cmd)


def _settings(home: Path | None) -> Settings:
    return Settings(home=home) if home else Settings()


def _open(home: Path | None) -> Market:
    from proofmarket.market import Market  # web3 loads only for the commands that need it

    return Market.open(_settings(home))


# --- chain --------------------------------------------------------------------------------------
@chain_app.command("up")
def chain_up(
    port: Annotated[int | None, typer.Option(help="RPC port (default: a free one)")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Start a local anvil devnet in the background; its state persists in HOME/devnet."""
    from proofmarket.market import MarketHome, devnet_up

    try:
        status = devnet_up(MarketHome(_settings(home).home), port=port)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    info = status.info
    assert info is not None
    if as_json:
        emit_json({"ok": True, "started": status.changed, "rpc_url": info.rpc_url, "pid": info.pid,
                   "chain_id": info.chain_id, "data_dir": info.data_dir})
        return
    verb = "started" if status.changed else "already running"
    out.print(f"devnet {verb} at {info.rpc_url} (chain id {info.chain_id}, pid {info.pid}); state in {info.data_dir}")


@chain_app.command("down")
def chain_down(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Stop the background devnet; its state is saved for the next 'chain up'."""
    from proofmarket.market import MarketHome, devnet_down

    try:
        status = devnet_down(MarketHome(_settings(home).home))
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "stopped": status.changed, "pid": status.info.pid if status.info else None})
    elif status.changed and status.info:
        out.print(f"devnet stopped (pid {status.info.pid}); state saved in {status.info.data_dir}")
    else:
        out.print("no devnet was running")


@chain_app.command("status")
def chain_status(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Say whether the background devnet is running."""
    from proofmarket.market import MarketHome, devnet_status

    try:
        status = devnet_status(MarketHome(_settings(home).home))
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    info = status.info
    if as_json:
        emit_json({"ok": True, "running": status.running, "rpc_url": info.rpc_url if info else None,
                   "pid": info.pid if info else None})
    elif status.running and info:
        out.print(f"devnet running at {info.rpc_url} (pid {info.pid})")
    else:
        out.print("no devnet running")


@chain_app.command("deploy")
def chain_deploy(
    usdc: Annotated[str | None, typer.Option(help="USDC token address (required off the devnet)")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Deploy the market contracts (once per chain: a live deployment is reused)."""
    from proofmarket.market import Market, format_usdc

    try:
        with Market.deploy(_settings(home), usdc=usdc) as market:
            d = market.deployment
            doc = {"ok": True, **d.to_json(), "prover": market.accounts.prover.address,
                   "platform_fee_bps": market.market.platform_fee_bps()}
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(doc)
        return
    out.print(f"chain id {d.chain_id}, deployer {d.deployer}" + (" (test USDC)" if d.test_usdc else ""))
    for name, contract in d.contracts.items():
        out.print(f"  {name:<16} {contract.address}  (block {contract.block})")
    out.print(f"platform fee {doc['platform_fee_bps']} bps, min stake {format_usdc(d.config.min_stake)} USDC, "
              f"prover {doc['prover']}")


# --- model owners -------------------------------------------------------------------------------
@model_app.command("register")
def model_register(
    model_id: Annotated[str, typer.Argument(help="a model id printed by compile")],
    price: Annotated[str, typer.Option("--price", help="price per inference in USDC, e.g. 0.25")],
    owner_share: Annotated[int, typer.Option("--owner-share", help="owner's share of the price, basis points")]
    = 7_000,
    metadata: Annotated[str | None, typer.Option(help="metadata CID (default: the model id)")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Deploy the model's verifier (once) and list the model on the registry at PRICE."""
    from proofmarket.market import format_usdc

    try:
        with _open(home) as market:
            reg = market.register_model(model_id, price, owner_share, metadata_cid=metadata)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    verifier = reg.verifier
    if as_json:
        emit_json({"ok": True, "model_id": reg.model_id, "model_key": reg.model_key, "action": reg.action,
                   "owner": reg.owner, "verifier": reg.spec.verifier, "price": reg.spec.price,
                   "owner_share_bps": reg.spec.owner_share_bps, "proof_mode": int(reg.spec.proof_mode),
                   "input_instances": reg.spec.input_instances, "params_commitment": hex(reg.spec.params_commitment),
                   "verifier_gas": verifier.tx.gas_used if verifier and verifier.tx else None,
                   "tx": _tx(reg.tx)})
        return
    out.print(f"model {reg.model_id}: {reg.action}, price {format_usdc(reg.spec.price)} USDC, owner share "
              f"{reg.spec.owner_share_bps} bps")
    out.print(f"  model key {reg.model_key}, owner {reg.owner}")
    if verifier is not None:
        how = "reused" if verifier.reused else f"deployed ({verifier.tx.gas_used:,} gas)" if verifier.tx else ""
        out.print(f"  verifier {verifier.address} {how}")
    if reg.tx is not None:
        out.print(f"  tx {reg.tx.tx_hash} ({reg.tx.gas_used:,} gas)")


@model_app.command("activate")
def model_activate(
    model_id: Annotated[str, typer.Argument(help="a model id you registered")],
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Sell the model again: nodes serving it take calls and escrow requests for it."""
    _set_active(model_id, True, as_json, home)


@model_app.command("deactivate")
def model_deactivate(
    model_id: Annotated[str, typer.Argument(help="a model id you registered")],
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Stop selling the model: nodes answer model_inactive and the market takes no new requests for it
    (open requests are still fulfilled or refunded)."""
    _set_active(model_id, False, as_json, home)


def _set_active(model_id: str, active: bool, as_json: bool, home: Path | None) -> None:
    state = "active" if active else "inactive"
    try:
        with _open(home) as market:
            tx = market.set_active(model_id, active)
            onchain = "0x" + market.onchain_id(model_id).hex()
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "model_id": model_id, "onchain_id": onchain, "active": active, "changed": tx is not None,
                   "tx": _tx(tx) if tx is not None else None})
        return
    out.print(f"model {model_id}: {state}" + ("" if tx is not None else " (no change)"))
    if tx is not None:
        out.print(f"  tx {tx.tx_hash} ({tx.gas_used:,} gas)")


@model_app.command("price")
def model_price(
    model_id: Annotated[str, typer.Argument(help="a model id you registered")],
    price: Annotated[str, typer.Argument(help="new price per inference in USDC, e.g. 0.25")],
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Change the model's price on the registry: nodes sell at it from their next call."""
    from proofmarket.market import format_usdc

    try:
        with _open(home) as market:
            atomic, tx = market.set_price(model_id, price)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "model_id": model_id, "price": atomic, "changed": tx is not None,
                   "tx": _tx(tx) if tx is not None else None})
        return
    out.print(f"model {model_id}: price {format_usdc(atomic)} USDC" + ("" if tx is not None else " (no change)"))
    if tx is not None:
        out.print(f"  tx {tx.tx_hash} ({tx.gas_used:,} gas)")


def earnings_cmd(
    address: Annotated[str | None, typer.Option(help="the owner or prover address (default: this owner account)")]
    = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="also show x402 money not released yet for this model id (repeatable; default: every "
                        "model compiled in HOME)")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """What an owner or prover was paid on the market (escrow and x402 splits), and what is still held."""
    from proofmarket.market import format_usdc

    try:
        from proofmarket.cli.market_cmds import _address

        checked = _address(address) if address else None
        with _open(home) as market:
            who = checked or market.accounts.owner.address
            ids = model if model is not None else [str(m["id"]) for m in market.workspace.models()]
            earned = market.earnings(who, ids)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, **earned.to_json()})
        return
    out.print(f"{earned.address}: earned {format_usdc(earned.earned)} USDC on this market, balance "
              f"{format_usdc(earned.balance)} USDC")
    for p in earned.pending:
        out.print(f"  not released yet: {format_usdc(p['amount'])} USDC for {p['model_id']} in {p['splitter']}")
    out.print(f"platform balance {format_usdc(earned.platform_balance)} USDC")


# --- consumers and provers ----------------------------------------------------------------------
def request_cmd(
    model_id: Annotated[str, typer.Argument(help="a registered model id")],
    input: Annotated[Path, typer.Option("--input", help='{"input_data": [[...]]} or {"inputs": {"x": [...]}}')],
    salt: Annotated[str | None, typer.Option(help=f"hashed-input models: {SALT_ELEMENTS} comma-separated integers "
                                                  f"below 2^{SALT_BITS} (default: random)")] = None,
    ttl: Annotated[int | None, typer.Option(help="seconds until the deadline (default 3600)")] = None,
    eip3009: Annotated[bool, typer.Option("--eip3009", help="pay with a signed EIP-3009 authorization "
                                                             "instead of approve + transferFrom")] = False,
    node: Annotated[str | None, typer.Option(
        "--node", help="a node serving the model: post the input to it (it proves and fulfils on chain)")] = None,
    wait: Annotated[float, typer.Option(
        help="with --node: seconds to wait for the fulfilment (0: do not wait)", min=0)] = 600.0,
    owner: Annotated[str | None, typer.Option(
        help="the listing's owner address (default: this market's owner account)")] = None,
    max_price: Annotated[str | None, typer.Option(
        "--max-price", help="refuse (registry_mismatch) when the listing costs more than this many USDC")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Check the model's registry listing against its manifest (vk, ONNX, settings, verifier code, owner,
    --max-price), escrow its price for INPUT (commitment computed here); print the request id. With --node,
    post the input to that node and wait until it has fulfilled the request on chain."""
    from proofmarket.market import format_usdc, parse_price

    try:
        doc = _read_json(input)
        salt_values = _parse_salt(salt)
        cap = parse_price(max_price) if max_price is not None else None
        from proofmarket.cli.market_cmds import _address
        with _open(home) as market:
            receipt = market.request(model_id, doc, salt=salt_values, ttl_s=ttl,
                                     payment="eip3009" if eip3009 else "approve",
                                     owner=_address(owner) if owner else None, max_price=cap)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    summary = {"ok": True, "request_id": receipt.request_id, "model_id": receipt.model_id,
               "commitment": receipt.commitment, "salt": receipt.salt, "deadline": receipt.deadline,
               "amount": receipt.amount, "consumer": receipt.consumer, "payment": receipt.payment,
               "tx": _tx(receipt.tx), "contract": receipt.contract, "node": receipt.node}
    if not as_json:
        where = "on the AttestationCourt (paid to the node after its challenge window)" \
            if receipt.contract == "AttestationCourt" else "in escrow"
        out.print(f"request {receipt.request_id}: {format_usdc(receipt.amount)} USDC {where} until "
                  f"{receipt.deadline}")
        out.print(f"  input commitment {receipt.commitment}")
        if receipt.salt is not None:
            out.print(f"  salt {','.join(map(str, receipt.salt))} (keep it: it opens the commitment)")
        out.print(f"  tx {receipt.tx.tx_hash} ({receipt.tx.gas_used:,} gas)")
    if node is not None and receipt.contract == "AttestationCourt":
        summary["node"] = _hand_to_court(node, summary, doc, wait, as_json)
    elif node is not None:
        summary["node"] = _hand_to_node(node, summary, doc, wait, as_json, home)
    if as_json:
        emit_json(summary)


def _hand_to_court(node: str, summary: dict[str, Any], doc: Any, wait: float, as_json: bool) -> dict[str, Any]:
    """Post a court request's generate request to ``node`` and (``wait`` > 0) wait for its commitment."""
    from proofmarket.sdk.client import Client

    request_id = int(summary["request_id"])
    try:
        with Client(node, poll_interval_s=0.5) as sdk:
            row = sdk.post_court_input(request_id, doc)
            token = row.get("access_token")
            if wait > 0:
                row = {**sdk.wait_court(request_id, ("committed", "paid", "slashed"), wait), "access_token": token}
                if row["status"] == "failed":
                    error = row.get("error") or {}
                    raise from_code(error.get("code") or "internal_error",
                                    error.get("message") or "the node failed the request")
    except ProofMarketError as exc:
        exc.details.setdefault("request_id", request_id)
        raise fail(exc, as_json) from exc
    if not as_json:
        court = (row.get("settlement") or {}).get("court") or {}
        out.print(f"  request posted to {node}: {row['status']}"
                  + (f", committed in tx {row['fulfil_tx']}; challenge window until {court.get('window_end')}"
                     if court else ""))
    return row


def _hand_to_node(node: str, summary: dict[str, Any], doc: Any, wait: float, as_json: bool,
                  home: Path | None = None) -> dict[str, Any]:
    """Post the input of an escrowed request to ``node``, then (``wait`` > 0) wait for its fulfilment and
    read it on chain (``settled_on_chain``): only what the chain says is reported. Exit codes: a failed
    request its error's code; a proof the market rejected 1 (the consumer got the price back); a node
    whose "fulfilled" the chain does not show 1 (settlement_mismatch); still open after ``wait`` s 3."""
    from proofmarket.core.errors import VerificationFailed
    from proofmarket.sdk.client import Client

    request_id = int(summary["request_id"])
    posted, token = False, None
    try:
        with Client(node, poll_interval_s=0.5) as sdk:
            row = sdk.post_request_input(request_id, doc, summary["salt"])
            token = row.get("access_token")  # reads the request's bundle (nobody else can)
            posted = True
            if not as_json:
                out.print(f"  input posted to {node}: {row['status']}")
            if wait > 0:
                row = sdk.wait_request(request_id, wait)
                if row["status"] == "failed":
                    error = row.get("error") or {}
                    raise from_code(error.get("code") or "proving_failed",
                                    error.get("message") or "the node failed the request")
                if (row.get("settlement") or {}).get("status") == "REJECTED":
                    raise VerificationFailed("the market rejected the node's proof: the price went back to the "
                                             "consumer and the prover was slashed")
                if row["status"] == "fulfilled":
                    summary["chain"] = settled_on_chain(sdk, request_id, row, summary["commitment"], home,
                                                        access_token=token)
    except ProofMarketError as exc:
        if not as_json and not posted:
            out.print(f"  request {request_id} stays in escrow: post its input again, or "
                      f"'proofmarket refund {request_id}' after the deadline")
        exc.details.setdefault("request_id", request_id)
        exc.details.setdefault("request", {k: summary[k] for k in ("commitment", "salt", "deadline", "tx")})
        raise fail(exc, as_json) from exc
    chain = summary.get("chain")
    if not as_json and chain is not None:
        out.print(f"  fulfilled on chain by prover {chain['prover']}: output hash {chain['output_hash']}")
        out.print(f"  output {chain['output']} (bundle {chain['bundle_cid']}, whose output hashes to the chain's)")
    if token and not row.get("access_token"):
        row = {**row, "access_token": token}  # --json: what reads the bundle later (X-Job-Token)
    return row


def settled_on_chain(sdk: Any, request_id: int, row: dict[str, Any], commitment: str,
                     home: Path | None, access_token: str | None = None) -> dict[str, Any]:
    """The node's "fulfilled", checked on chain: getRequest is Fulfilled, its outputHash is the keccak of the
    output instances of the bundle the node names, and that bundle answers the request's commitment."""
    import dataclasses

    from proofmarket.sdk.checks import check_settlement

    with _open(home) as market:
        onchain = market.market.get_request(request_id)
    bundle_cid = str(row.get("bundle_cid") or "")
    bundle = sdk.proof(bundle_cid, access_token) if bundle_cid else None
    return dataclasses.asdict(check_settlement(request_id, onchain, bundle, bundle_cid, commitment))


def fulfill_cmd(
    request_id: Annotated[int, typer.Argument(help="the request id printed by request")],
    timeout: Annotated[float | None, typer.Option(help="stop a proof running longer than this (seconds)")] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Prove the request's input and settle it on chain. Exit 1 when the market rejected the proof."""
    from proofmarket.market import format_usdc, settlement_summary

    try:
        with _open(home) as market:
            result = market.fulfill(request_id, timeout_s=timeout)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    s = result.settlement
    if as_json:
        emit_json({"ok": s.valid, **settlement_summary(s), "output": result.output, "bundle_cid": result.bundle_cid,
                   "timings": result.timings})
    else:
        out.print(f"request {request_id}: {s.status.name.lower()} in tx {s.tx.tx_hash} ({s.tx.gas_used:,} gas)")
        if s.valid:
            out.print(f"  output {result.output}")
            out.print(f"  paid: owner {format_usdc(s.owner_amount)}, prover {format_usdc(s.prover_amount)}, "
                      f"platform {format_usdc(s.platform_fee)} USDC")
        else:
            out.print(f"  consumer refunded {format_usdc(s.refunded)} USDC, prover slashed {format_usdc(s.slashed)}")
        out.print(f"  proof bundle {result.bundle_cid} (prove {result.timings.get('prove_s', 0):.2f} s)")
    if not s.valid:
        raise typer.Exit(1)


def refund_cmd(
    request_id: Annotated[int, typer.Argument(help="the request id")],
    court: Annotated[bool, typer.Option("--court", help="a request on the AttestationCourt (attested models)")]
    = False,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Take the escrowed amount back after the request's deadline (consumer) when no node answered it."""
    from proofmarket.market import format_usdc

    try:
        with _open(home) as market:
            result = market.refund_court(request_id) if court else market.refund(request_id)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json({"ok": True, "request_id": request_id, "amount": result.amount, "consumer": result.consumer,
                   "tx": _tx(result.tx)})
        return
    out.print(f"request {request_id}: {format_usdc(result.amount)} USDC refunded to {result.consumer} "
              f"(tx {result.tx.tx_hash})")


# --- helpers ------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"input file {path} does not exist") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"input file {path} is not valid JSON ({exc})") from exc


def _parse_salt(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = json.loads(text) if text.strip().startswith("[") else [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError("--salt takes comma-separated integers, e.g. 1,2,3") from exc
    if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
        raise UsageError("--salt takes comma-separated integers, e.g. 1,2,3")
    return values


def _tx(tx: Any) -> dict[str, Any] | None:
    return None if tx is None else {"hash": tx.tx_hash, "block": tx.block_number, "gas_used": tx.gas_used}
