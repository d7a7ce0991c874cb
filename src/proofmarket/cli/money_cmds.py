"""``proofmarket payouts run`` and ``proofmarket ledger check``: the operator's side of the node's book; and what
``proofmarket earnings --node URL`` prints: an owner's earnings over every rail, signed by the owner's key.

    proofmarket payouts run [--node URL]                    pay every payee what the book owes it, now
    proofmarket ledger check [--node URL] [--from-block N]  the book against its rules and the chain; exit 1 when
                                                            any difference is found, each printed
    proofmarket ledger replay [--node URL]                  book what the node account sent that the book lacks
    proofmarket ledger unknown [--node URL]                 held payouts and refunds whose outcome is unknown
    proofmarket ledger resolve REF (--paid TX | --not-sent REASON)   the operator settles one from the chain
    proofmarket ledger write-off REF --reason TEXT          void a channel charge that can no longer be collected
The operator's commands send PROOFMARKET_ADMIN_TOKEN (the node's admin token). Hook: ``register(app)`` in cli/main.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from proofmarket.cli.common import JsonOpt
from proofmarket.cli.groups import group
from proofmarket.cli.infer_cmd import DEFAULT_NODE, _account
from proofmarket.cli.output import console, emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.core.units import format_usdc

NodeOpt = Annotated[str, typer.Option("--node", envvar="PROOFMARKET_NODE_URL", help="the node's base URL")]
payouts = group(help="pay out what the node's book owes (operator)", no_args_is_help=True)
ledger = group(help="the node's book (operator)", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(payouts, name="payouts")
    app.add_typer(ledger, name="ledger")


def _operator(node: str, as_json: bool, ask: Callable[[Any, str], Any]) -> Any:
    """``ask(sdk, admin_token)`` on the node (the operator's commands); a refusal ends the command with its code."""
    from proofmarket.sdk.client import Client

    try:
        with Client(node) as sdk:
            return ask(sdk, _token())
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc


def _token() -> str:
    from proofmarket.core.settings import env_value
    token = env_value("PROOFMARKET_ADMIN_TOKEN")
    if not token:
        raise UsageError("set PROOFMARKET_ADMIN_TOKEN to the node's admin token: payouts and the ledger check are the "
                         "operator's")
    return token.strip()


@payouts.command("run")
def payouts_run(node: NodeOpt = DEFAULT_NODE, as_json: JsonOpt = False) -> None:
    """Pay every payee what the node's book owes it now (credits draws, pass calls, swept channel charges)."""
    done = _operator(node, as_json, lambda sdk, token: sdk.run_payouts(token))
    if as_json:
        emit_json(done)
        return
    if not done.get("ran"):
        out.print("another node of this database holds the settler's lease: it pays out; nothing was done here")
        return
    report = done.get("payouts") or {}
    if report.get("held"):
        console.print(f"payouts held: {report['held']}")
        raise typer.Exit(1)
    for payee, tx in sorted((report.get("paid") or {}).items()):
        out.print(f"paid {payee} in {tx}")
    for payee, blocked in sorted((report.get("blocked") or {}).items()):
        out.print(f"blocked {payee}: the token refuses it ({blocked.get('reason')}); tried again later")
    out.print(f"payouts: {len(report.get('paid') or {})} payees paid, {len(report.get('confirmed') or [])} confirmed, "
              f"{len(report.get('waiting') or [])} waiting for confirmations, {len(report.get('voided') or [])} "
              "voided (still owed)")


@ledger.command("check")
def ledger_check(node: NodeOpt = DEFAULT_NODE, as_json: JsonOpt = False,
                 from_block: Annotated[int, typer.Option("--from-block", min=0, help="check transactions mined "
                                                                                   "from this block")] = 0) -> None:
    """Compare the node's book with its own rules and with the chain; name every difference (exit 1 if any)."""
    report = _operator(node, as_json, lambda sdk, token: sdk.ledger_check(token, from_block))
    if as_json:
        emit_json(report)
    else:
        for difference in report["differences"]:
            out.print(f"difference: {difference}")
        solvency = report.get("solvency")
        if solvency:
            out.print(f"solvency: the node account holds {format_usdc(int(solvency['token_balance']))} USDC, its book "
                      f"says {format_usdc(int(solvency['owed']))} USDC: "
                      + ("solvent" if solvency["solvent"] else
                         f"SHORT by {format_usdc(int(solvency['shortfall']))} USDC"))
        for move in (report.get("tail") or {}).get("incoming") or []:
            out.print(f"not in the book (incoming): {format_usdc(int(move['amount']))} USDC from {move['from']} in "
                      f"{move['tx']} (a funding, an unclaimed deposit, or a purchase a restore lost)")
        for payee, blocked in sorted((report.get("blocked_payees") or {}).items()):
            out.print(f"blocked payee: {payee} ({blocked.get('reason')}; {blocked.get('attempts')} tries since "
                      f"{blocked.get('since')})")
        out.print(f"ledger: {'no difference' if report['ok'] else str(len(report['differences'])) + ' differences'}"
                  f" ({report['transfers_checked']} transfers, {report['transactions_checked']} transactions checked)")
    if not report["ok"]:
        raise typer.Exit(1)


@ledger.command("replay")
def ledger_replay(node: NodeOpt = DEFAULT_NODE, as_json: JsonOpt = False) -> None:
    """Book the token transfers the node's account sent that its book does not hold (after a restore from an older
    backup); until then the node pays nothing. Each is booked as what the book owed its recipient."""
    done = _operator(node, as_json, lambda sdk, token: sdk.ledger_replay(token))
    if as_json:
        emit_json(done)
        return
    for entry in done.get("booked") or []:
        parts = ", ".join(f"{k} {format_usdc(int(v))}" for k, v in sorted((entry.get("as") or {}).items()))
        out.print(f"booked {entry['tx']}: {format_usdc(int(entry['amount']))} USDC to {entry['to']} ({parts})")
    for move in done.get("incoming") or []:
        out.print(f"not in the book (incoming, not booked): {format_usdc(int(move['amount']))} USDC from "
                  f"{move['from']} in {move['tx']}")
    held = done.get("held") or []
    out.print(f"replay: {len(done.get('booked') or [])} transfers booked; " +
              (f"{len(held)} still not booked" if held else "the book holds everything the node account sent"))
    if held:
        raise typer.Exit(1)


@ledger.command("unknown")
def ledger_unknown(node: NodeOpt = DEFAULT_NODE, as_json: JsonOpt = False) -> None:
    """List the held payouts and credits refunds whose transaction may have left with no hash known."""
    held = _operator(node, as_json, lambda sdk, token: sdk.unknown_outcomes(token))
    if as_json:
        emit_json({"unknown": held})
        return
    for t in held:
        out.print(f"{t['ref']}  {t['kind']}  {t['postings']}  since {t['created_at']}")
    out.print(f"unknown outcomes: {len(held)} (settle each with 'proofmarket ledger resolve REF --paid TX' or "
              "'--not-sent REASON' after reading the node's account on chain)")


@ledger.command("resolve")
def ledger_resolve(
    ref: Annotated[str, typer.Argument(help="the held transfer's reference (see 'proofmarket ledger unknown')")],
    paid: Annotated[str | None, typer.Option("--paid", help="the transaction that paid it (checked on chain)")]
    = None,
    not_sent: Annotated[str | None, typer.Option("--not-sent", help="it was never sent: the reason (voided: owed "
                                                                    "again)")] = None,
    node: NodeOpt = DEFAULT_NODE, as_json: JsonOpt = False,
) -> None:
    """Settle a held payout or refund whose outcome no machine may decide: captured with the transaction that paid
    it, or voided when it was never sent."""
    if (paid is None) == (not_sent is None):
        raise fail(UsageError("give either --paid TX or --not-sent REASON"), as_json)
    done = _operator(node, as_json, lambda sdk, token: sdk.resolve_unknown(token, ref, paid_tx=paid,
                                                                            not_sent=not_sent))
    if as_json:
        emit_json(done)
    else:
        out.print(f"{done['ref']}: {done['outcome']}")


@ledger.command("write-off")
def ledger_write_off(
    ref: Annotated[str, typer.Argument(help="the charge's reference (the receivables of 'proofmarket ledger check')")],
    reason: Annotated[str, typer.Option("--reason", help="why it cannot be collected (kept in the book)")],
    node: NodeOpt = DEFAULT_NODE, as_json: JsonOpt = False,
) -> None:
    """Write off a channel charge the node can no longer collect (its channel refused by the chain, or older than a
    sweep interval): one balanced entry, nothing owed for it."""
    done = _operator(node, as_json, lambda sdk, token: sdk.write_off(token, ref, reason))
    if as_json:
        emit_json(done)
    else:
        out.print(f"{done['ref']}: {done['outcome']} ({done['reason']})")


def node_earnings(node: str, key_env: str, devnet: bool, as_json: bool) -> None:
    """An owner's earnings on a node: the market part and the book over every rail (owed, in flight, paid, by
    model), signed by the owner's key."""
    from proofmarket.sdk.client import Client

    try:
        account = _owner(key_env, devnet)
        with Client(node, account=account) as sdk:
            doc = sdk.book_earnings()
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(doc)
        return
    book: dict[str, Any] = doc.get("book") or {}
    out.print(f"{doc['address']}: owed {format_usdc(int(book.get('owed', 0)))} USDC, in flight "
              f"{format_usdc(int(book.get('in_flight', 0)))} USDC, paid {format_usdc(int(book.get('paid', 0)))} USDC "
              "(every rail, the node's book)")
    for model_id, m in sorted((book.get("models") or {}).items()):
        out.print(f"  {model_id}: owed {format_usdc(int(m['owed']))}, in flight {format_usdc(int(m['in_flight']))}, "
                  f"paid {format_usdc(int(m['paid']))} USDC")
    out.print(f"market credits in the book: withdrawable {format_usdc(int(book.get('withdrawable', 0)))} USDC, "
              f"withdrawn {format_usdc(int(book.get('withdrawn', 0)))} USDC")
    blocked = book.get("payout_blocked")
    if blocked:
        out.print(f"[bold yellow]payouts blocked[/]: the token refuses transfers to {doc['address']} "
                  f"({blocked.get('reason')}); {blocked.get('attempts')} tries since {blocked.get('since')}: what you "
                  "are owed stays owed and is paid once the token takes the address")
    if doc.get("earned") is not None:
        out.print(f"market: earned {format_usdc(int(doc['earned']))} USDC, owed {format_usdc(int(doc['owed']))} USDC "
                  "(paid by 'proofmarket withdraw')")


def _owner(key_env: str, devnet: bool) -> Any:
    return owner_account(key_env, devnet, "earnings in the book are signed")


def owner_account(key_env: str, devnet: bool, why: str) -> Any:
    """The owner's account: the devnet's dev owner (``--devnet``), else the key in ``key_env``."""
    if devnet:
        from proofmarket.chain.devkeys import DEVNET_CHAIN_ID, dev_account
        from proofmarket.onchain.accounts import DEV_ROLES

        return dev_account(DEV_ROLES["owner"], DEVNET_CHAIN_ID)
    account = _account(key_env, False)
    if account is None:
        raise UsageError(f"set {key_env} to the owner's key (or --devnet): {why}")
    return account
