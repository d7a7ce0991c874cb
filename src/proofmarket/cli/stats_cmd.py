"""``proofmarket stats MODEL_ID --node URL``: a model's calls, errors, latency, tokens and revenue by day.

Reads ``GET /v1/models/{id}/stats`` through the SDK; ``--json`` prints the node's document as it is.
Hook: ``stats_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from proofmarket.cli.common import JsonOpt
from proofmarket.cli.infer_cmd import DEFAULT_NODE
from proofmarket.cli.output import emit_json, fail, out
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.core.units import format_usdc


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_cmd)


def stats_cmd(
    model_id: Annotated[str, typer.Argument(help="the model id (see the node's GET /v1/models)")],
    node: Annotated[str, typer.Option("--node", envvar="PROOFMARKET_NODE_URL", help="the node's base URL")]
    = DEFAULT_NODE,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="the window, in UTC days")] = 30,
    key_env: Annotated[str | None, typer.Option("--key-env", help="sign as the model's owner with the key in this "
                                                "environment variable: every number (public: buckets of fewer "
                                                "than the node's min_calls are hidden)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print MODEL_ID's analytics on a node: calls by status and rail, errors by code, latency and run time
    p50/p95, tokens, revenue, and the calls of every day of the window."""
    from proofmarket.cli.infer_cmd import _account
    from proofmarket.sdk.client import Client

    try:
        account = _account(key_env, False) if key_env else None
        if key_env and account is None:
            raise UsageError(f"--key-env {key_env}: that environment variable holds no key")
        with Client(node, account=account) as sdk:
            doc = sdk.stats(model_id, days, signed=account is not None)
    except ProofMarketError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        emit_json(doc)
        return
    if "hidden" in doc:
        out.print(f"model:    {doc['model_id']} (last {doc['days']} days): {doc['hidden']} (--key-env)")
        return
    calls = doc["calls"]
    out.print(f"model:    {doc['model_id']} (last {doc['days']} days)")
    out.print(f"calls:    {calls['total']} ({calls['settled']} paid, {calls['free']} free, {calls['failed']} failed, "
              f"{calls['open']} open); by rail: {calls['by_rail'] or '-'}")
    out.print(f"errors:   {doc['errors'] or 'none'}")
    for name in ("latency_s", "run_s"):
        p = doc[name]
        out.print(f"{name + ':':9} p50 {p['p50'] if p['p50'] is not None else '-'} s, "
                  f"p95 {p['p95'] if p['p95'] is not None else '-'} s over {p['count']} calls")
    out.print(f"tokens:   {doc['tokens']}")
    out.print(f"revenue:  {format_usdc(int(doc['revenue_atomic']))} USDC")
    active = [d for d in doc["by_day"] if d["calls"] or d.get("hidden")]
    for day in active[-14:]:
        if day.get("hidden"):
            out.print(f"  {day['day']}  fewer than {doc['min_calls']} calls (hidden)")
            continue
        out.print(f"  {day['day']}  {day['calls']:6} calls  {day['failed']:4} failed  "
                  f"{format_usdc(int(day['revenue_atomic'])):>12} USDC")
