"""``proofmarket facilitator serve``: a self-hosted x402 facilitator over HTTP (``payments/facilitator_server.py``).

    proofmarket facilitator serve [--host 127.0.0.1] [--port 8403] [--wait 60] [--insecure]

Off loopback it needs PROOFMARKET_FACILITATOR_TOKEN (callers send it as a bearer token): without one it refuses to
start, unless ``--insecure`` says the operator means to let anyone who reaches it make it spend gas.

It settles on the chain of PROOFMARKET_RPC_URL (unset: the devnet of 'proofmarket chain up') and pays gas with
PROOFMARKET_FACILITATOR_KEY (on the devnet a dev account by default; never the node's key). A node uses it with
PROOFMARKET_FACILITATOR_URL=http://HOST:PORT. Hook: ``facilitator_cmd.register(app)`` in ``cli/main.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from proofmarket.cli.common import HomeOpt, settings_for
from proofmarket.cli.groups import group
from proofmarket.cli.output import console, fail
from proofmarket.core.errors import ProofMarketError, UsageError

facilitator_typer = group(help="A self-hosted x402 facilitator: verify and settle payments for nodes.",
                                no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(facilitator_typer, name="facilitator")


@facilitator_typer.command("serve")
def facilitator_serve(
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 8403,
    wait: Annotated[float, typer.Option(help="seconds a settlement waits for its receipt before answering "
                                             "it pending")] = 60.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    insecure: Annotated[bool, typer.Option("--insecure", help="listen off loopback without "
                                           "PROOFMARKET_FACILITATOR_TOKEN: anyone who reaches the port can make "
                                           "it spend its gas settling valid payments")] = False,
    home: HomeOpt = None,
) -> None:
    """Serve POST /verify, POST /settle and GET /supported (the x402 facilitator API) for the exact,
    batch-settlement and upto schemes on the chain of PROOFMARKET_RPC_URL. Runs until interrupted."""
    import uvicorn

    from proofmarket.chain.client import ChainClient
    from proofmarket.core.settings import X402Settings
    from proofmarket.payments.exact.rail import is_loopback
    from proofmarket.payments.facilitator_server import (
        build_facilitator,
        facilitator_account,
        facilitator_app,
        facilitator_rpc,
    )

    extra = X402Settings()
    token = extra.facilitator_token.get_secret_value() if extra.facilitator_token else None
    if not is_loopback(host) and not token and not insecure:
        raise fail(UsageError(f"the facilitator would listen on {host} without PROOFMARKET_FACILITATOR_TOKEN: anyone "
                              "who reaches it could make it spend gas; set the token (callers send it as a bearer "
                              "token), listen on 127.0.0.1, or pass --insecure"), False)
    try:
        settings = settings_for(home)
        rpc_url = facilitator_rpc(settings)
        client = ChainClient(rpc_url)
        signer = facilitator_account(settings, X402Settings(), client.chain_id)
        served = build_facilitator(rpc_url, signer, confirmation_timeout_seconds=wait, client=client)
    except ProofMarketError as exc:
        raise fail(exc, False) from exc
    console.print(f"x402 facilitator on http://{host}:{port}: exact on {served.network}, gas paid by {served.signer}")
    if not is_loopback(host) and not token:
        console.print("[yellow]--insecure: listening off loopback without PROOFMARKET_FACILITATOR_TOKEN: anyone who "
                      "reaches it can make it spend gas on valid payments[/yellow]")
    uvicorn.run(facilitator_app(served, token=token), host=host, port=port, log_level=log_level)
