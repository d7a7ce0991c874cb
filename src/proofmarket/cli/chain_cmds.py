"""CLI commands for the on-chain market: a thin shell over ``proofmarket.market``.

    proofmarket chain up|down|status|deploy
    proofmarket model register MODEL_ID --price USDC [--owner-share BPS]       (cli/owner_cmds.py)
    proofmarket model activate|deactivate MODEL_ID;  proofmarket model price MODEL_ID USDC
    proofmarket earnings [--address ADDR]
    proofmarket request MODEL_ID --input INPUT.json [--salt ...]                (cli/request_cmds.py)
    proofmarket fulfill REQUEST_ID
    proofmarket refund REQUEST_ID

Amounts print in USDC; ``--json`` gives atomic units (6 decimals) for scripts.
"""

from __future__ import annotations

from typing import Annotated

import typer

from proofmarket.cli import owner_cmds, request_cmds
from proofmarket.cli.common import HomeOpt, JsonOpt, Run, command, open_market, settings_for, tx_json

chain_app = typer.Typer(help="The chain: a local devnet (anvil) and the market contracts.", no_args_is_help=True)

# the names other command modules imported from here before cli/common.py
_settings, _open, _tx = settings_for, open_market, tx_json
__all__ = ["HomeOpt", "JsonOpt", "chain_app", "register"]


def register(app: typer.Typer) -> None:
    """Add the market commands to the proofmarket CLI."""
    app.add_typer(chain_app, name="chain")
    app.add_typer(owner_cmds.model_app, name="model")
    command(app, "request")(request_cmds.request_cmd)
    command(app, "fulfill")(request_cmds.fulfill_cmd)
    command(app, "refund")(request_cmds.refund_cmd)
    command(app, "earnings")(owner_cmds.earnings_cmd)


@command(chain_app, "up")
def chain_up(run: Run, port: Annotated[int | None, typer.Option(help="RPC port (default: a free one)")] = None) -> None:
    """Start a local anvil devnet in the background; its state persists in HOME/devnet."""
    from proofmarket.market import MarketHome, devnet_up

    status = devnet_up(MarketHome(run.settings.home), port=port)
    info = status.info
    assert info is not None
    verb = "started" if status.changed else "already running"
    run.done({"started": status.changed, "rpc_url": info.rpc_url, "pid": info.pid, "chain_id": info.chain_id,
              "data_dir": info.data_dir},
             f"devnet {verb} at {info.rpc_url} (chain id {info.chain_id}, pid {info.pid}); state in {info.data_dir}")


@command(chain_app, "down")
def chain_down(run: Run) -> None:
    """Stop the background devnet; its state is saved for the next 'chain up'."""
    from proofmarket.market import MarketHome, devnet_down

    status = devnet_down(MarketHome(run.settings.home))
    info = status.info
    said = f"devnet stopped (pid {info.pid}); state saved in {info.data_dir}" if status.changed and info \
        else "no devnet was running"
    run.done({"stopped": status.changed, "pid": info.pid if info else None}, said)


@command(chain_app, "status")
def chain_status(run: Run) -> None:
    """Say whether the background devnet is running."""
    from proofmarket.market import MarketHome, devnet_status

    status = devnet_status(MarketHome(run.settings.home))
    info = status.info
    said = f"devnet running at {info.rpc_url} (pid {info.pid})" if status.running and info else "no devnet running"
    run.done({"running": status.running, "rpc_url": info.rpc_url if info else None,
              "pid": info.pid if info else None}, said)


@command(chain_app, "deploy")
def chain_deploy(
    run: Run, usdc: Annotated[str | None, typer.Option(help="USDC token address (required off the devnet)")] = None,
) -> None:
    """Deploy the market contracts (once per chain: a live deployment is reused)."""
    from proofmarket.market import Market, format_usdc

    with Market.deploy(run.settings, usdc=usdc) as market:
        d = market.deployment
        doc = {**d.to_json(), "prover": market.accounts.prover.address,
               "platform_fee_bps": market.market.platform_fee_bps()}
    run.done(doc, f"chain id {d.chain_id}, deployer {d.deployer}" + (" (test USDC)" if d.test_usdc else ""),
             *(f"  {name:<16} {contract.address}  (block {contract.block})" for name, contract in d.contracts.items()),
             f"platform fee {doc['platform_fee_bps']} bps, min stake {format_usdc(d.config.min_stake)} USDC, "
             f"prover {doc['prover']}")
