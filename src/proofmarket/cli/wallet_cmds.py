"""A consumer's wallet on a node from the command line, the SDK's ``client.keys``, ``client.credits`` and
``client.passes``:

    proofmarket apikey create [--model ID ...] [--cap UNITS] [--expires-in S]   the secret is printed once
    proofmarket apikey list | revoke KEY_ID
    proofmarket credits buy UNITS | show | refund
    proofmarket pass buy --calls-per-day N --days D [--model ID] [--max-amount UNITS] | list
    proofmarket channel show | refund       the wallet's batch-settlement channels (opened and topped up by
                                            'proofmarket infer --scheme batch-settlement'), a cooperative refund
    proofmarket permit2 approve [--rpc-url URL] [--token ADDRESS]
                                            let Permit2 move the wallet's token once: what x402 upto payments
                                            need ('proofmarket generate --scheme upto')

Every command signs with the consumer's account: ``--keystore NAME`` (its password from
PROOFMARKET_KEYSTORE_PASSWORD_FILE, else asked), ``--devnet`` (anvil's dev consumer), or the plain key in
``--key-env`` for a node on the devnet only. ``--json`` prints the node's answer. Hook: ``register(app)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from proofmarket.cli.common import JsonOpt
from proofmarket.cli.groups import group
from proofmarket.cli.infer_cmd import DEFAULT_KEY_ENV, DEFAULT_NODE, KeystoreOpt, paying_account
from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.core.units import format_usdc

NodeOpt = Annotated[str, typer.Option("--node", envvar="PROOFMARKET_NODE_URL", help="the node's base URL")]
KeyEnvOpt = Annotated[str, typer.Option("--key-env", help="environment variable holding the consumer's key (a node "
                                                          "on the devnet only)")]
DevnetOpt = Annotated[bool, typer.Option("--devnet", help="on the devnet: sign with anvil's dev consumer account")]
apikey = group(help="API keys of the consumer's wallet on a node (signed by the wallet)", no_args_is_help=True)
credits = group(help="prepaid credits of the consumer's wallet on a node (bought with one x402 payment)",
                      no_args_is_help=True)
passes = group(help="passes (N calls a day for D days, one x402 payment) on a node", no_args_is_help=True)
channel = group(help="the wallet's x402 batch-settlement channels on a node (paid per call with vouchers)",
                      no_args_is_help=True)
permit2 = group(help="Permit2, which x402 upto payments move the wallet's token through", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(apikey, name="apikey")
    app.add_typer(credits, name="credits")
    app.add_typer(passes, name="pass")
    app.add_typer(channel, name="channel")
    app.add_typer(permit2, name="permit2")


def _wallet(node: str, key_env: str, devnet: bool, keystore: str | None, as_json: bool,
            ask: Callable[[Any], Any], show: Callable[[Any], None], as_doc: Callable[[Any], Any] = lambda a: a) -> None:
    """``ask(sdk)`` with the consumer's signing account on the node, then the answer printed: ``as_doc(answer)`` as
    JSON with ``--json``, else ``show(answer)``. A refusal ends the command with its code."""
    from proofmarket.sdk.client import Client

    try:
        account = paying_account(node, key_env, devnet, keystore)
        if account is None:
            raise UsageError(f"these requests are signed by the wallet: pass --keystore NAME, --devnet, or set "
                             f"{key_env}")
        with Client(node, account, devnet=devnet) as sdk:
            answer = ask(sdk)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(as_doc(answer))
    else:
        show(answer)


def _listed(node: str, key_env: str, devnet: bool, keystore: str | None, as_json: bool, ask: Callable[[Any], Any],
            key: str, empty: str, line: Callable[[Any], str]) -> None:
    """A list the wallet asks for: one ``line`` an item (``empty`` for none), or ``{key: [...]}`` with ``--json``."""
    def show(items: Any) -> None:
        for item in items:
            out.print(line(item))
        if not items:
            out.print(empty)

    _wallet(node, key_env, devnet, keystore, as_json, ask, show, lambda items: {key: items})


@apikey.command("create")
def apikey_create(
    model: Annotated[list[str] | None, typer.Option("--model", help="scope the key to this model (repeatable)")]
    = None,
    cap: Annotated[int | None, typer.Option("--cap", min=1, help="most atomic USDC units the key may spend")] = None,
    expires_in: Annotated[int | None, typer.Option("--expires-in", min=1, help="seconds until the key expires")]
    = None,
    node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
    devnet: DevnetOpt = False, as_json: JsonOpt = False,
) -> None:
    """Make an API key for the wallet; its secret is printed once (the node keeps only its hash)."""
    def show(made: Any) -> None:
        out.print(f"key {made['id']} for {made['wallet']}: {made['key']}")
        out.print("shown once: keep it (send it as 'Authorization: Bearer KEY')")

    _wallet(node, key_env, devnet, keystore, as_json,
            lambda sdk: sdk.keys.create(models=model, cap_atomic=cap, expires_in_s=expires_in), show)


@apikey.command("list")
def apikey_list(node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
                devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """The wallet's keys (never their secrets)."""
    _listed(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.keys.list(), "keys", "no keys",
            lambda k: f"{k['id']}  {k.get('status', '')}  models {k.get('models') or 'any'}  "
                      f"cap {k.get('cap_atomic')}  spent {k.get('spent_atomic', '')}")


@apikey.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (see 'apikey list')")],
                  node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
                  devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """Revoke one of the wallet's keys: refused from the next request on."""
    _wallet(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.keys.revoke(key_id),
            lambda _: out.print(f"key {key_id} revoked"))


@credits.command("buy")
def credits_buy(amount: Annotated[int, typer.Argument(min=1, help="atomic USDC units of credits to buy")],
                node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
                devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """Buy credits with one x402 payment of AMOUNT; waits until the payment is mined (or says it is pending)."""
    def show(bought: Any) -> None:
        purchase = bought["purchase"]
        if bought.get("status") == "credited":
            out.print(f"credited {format_usdc(int(purchase['amount']))} USDC (tx {purchase.get('transaction')})")
        else:
            out.print(f"purchase {purchase.get('id')}: {bought.get('status')} (poll {purchase.get('poll')})")

    _wallet(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.credits.buy(amount), show)


@credits.command("show")
def credits_show(node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
                 devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """The wallet's balance, what its unsettled calls hold, and its statement: purchases, deposits, draws and refunds
    (newest first), each with its transaction or call and the balance after it."""
    def show(shown: Any) -> None:
        out.print(f"{shown['wallet']}: {format_usdc(int(shown['balance']))} USDC of credits, "
                  f"{format_usdc(int(shown['held']))} held by calls not settled yet")
        for entry in (shown.get("ledger") or [])[:20]:  # the statement from the book, newest first
            sign = "+" if entry.get("direction") == "in" else "-"
            what = entry.get("tx_hash") or (f"call {entry['job_id']}" if entry.get("job_id") else entry.get("ref"))
            after = (f"  balance {format_usdc(int(entry['balance_after']))}" if entry.get("balance_after") is not None
                     else f"  ({entry.get('status')})")
            out.print(f"  {entry.get('created_at', '')[:19]}  {entry.get('kind', ''):<8} "
                      f"{sign}{format_usdc(int(entry.get('amount') or 0))} USDC{after}  {what}")

    _wallet(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.credits.show(), show)


@credits.command("refund")
def credits_refund(node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
                   devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """The wallet's unspent credits back on chain (what unsettled calls hold stays)."""
    _wallet(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.credits.refund(),
            lambda done: out.print(f"refunded {format_usdc(int(done['refunded']))} USDC to {done['wallet']} "
                                   f"(tx {done.get('transaction')})"))


@passes.command("buy")
def pass_buy(calls_per_day: Annotated[int, typer.Option("--calls-per-day", min=1, help="calls a day")],
             days: Annotated[int, typer.Option("--days", min=1, help="days the pass lasts")],
             model: Annotated[str | None, typer.Option("--model", help="one model (unset: any)")] = None,
             max_amount: Annotated[int | None, typer.Option("--max-amount", min=1, help="most atomic USDC units "
                                                                                       "to pay")] = None,
             node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
             devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """Buy a pass with one x402 payment; the wallet's API keys call within it before drawing credits."""
    _wallet(node, key_env, devnet, keystore, as_json,
            lambda sdk: sdk.passes.buy(calls_per_day, days, model_id=model, max_amount=max_amount),
            lambda bought: out.print(f"pass of {calls_per_day} calls a day for {days} days: {bought.get('status')}, "
                                     f"paid {format_usdc(int(bought['purchase']['amount']))} USDC"))


@passes.command("list")
def pass_list(node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
              devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """The wallet's live passes."""
    _listed(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.passes.list(), "passes", "no live passes",
            lambda p: f"{p.get('id', '')}  {p.get('calls_per_day')} calls a day  model {p.get('model_id') or 'any'}  "
                      f"until {p.get('ends_at', '')}")


@channel.command("show")
def channel_show(node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
                 devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """The wallet's channels on the node: deposited balance, charged total, claimed on chain."""
    _listed(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.channels(), "channels", "no channel on this node",
            lambda c: f"{c['channel_id']}  balance {format_usdc(int(c['balance']))} USDC, charged "
                      f"{format_usdc(int(c['charged']))}, claimed {format_usdc(int(c['claimed']))}, available "
                      f"{format_usdc(int(c['available']))}")


@channel.command("refund")
def channel_refund(node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
                   devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """A cooperative refund of the wallet's channel: the node claims what it charged, the rest comes back on chain."""
    _wallet(node, key_env, devnet, keystore, as_json, lambda sdk: sdk.refund_channel(),
            lambda done: out.print(f"channel refunded (tx {done.get('transaction')})"))


@permit2.command("approve")
def permit2_approve(
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", envvar="PROOFMARKET_RPC_URL",
                                                help="the chain the node takes payments on; unset = the devnet of "
                                                     "'proofmarket chain up'")] = None,
    token: Annotated[str | None, typer.Option("--token", help="the token; unset = the asset of the node's upto "
                                                              "terms")] = None,
    node: NodeOpt = DEFAULT_NODE, key_env: KeyEnvOpt = DEFAULT_KEY_ENV, keystore: KeystoreOpt = None,
    devnet: DevnetOpt = False, as_json: JsonOpt = False) -> None:
    """Let Permit2 move the wallet's token (one transaction, once per token and chain): then each x402 upto payment is
    a signature, and a generation is charged the tokens it produced ('proofmarket generate --scheme upto')."""
    def ask(sdk: Any) -> Any:
        url = rpc_url
        if url is None:
            from proofmarket.core.settings import Settings
            from proofmarket.onchain.service import connect

            url = connect(Settings()).rpc_url
        return sdk.approve_permit2(url, token)

    _wallet(node, key_env, devnet, keystore, as_json, ask,
            lambda done: out.print(f"Permit2 ({done['permit2']}) may move {done['token']}: "
                                   + (f"approved (tx {done['transaction']})" if done["transaction"]
                                      else "already approved")))
