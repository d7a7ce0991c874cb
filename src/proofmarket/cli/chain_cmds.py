"""CLI commands for the on-chain market: a thin shell over ``proofmarket.onchain``.

    proofmarket chain up|down|status
    proofmarket chain deploy [--profile NAME] [--dry-run] [--usdc ADDR] [--record-dir DIR]
    proofmarket chain verify-deployment [--record FILE]   on-chain code vs the artifacts built here (exit 4: differs)
    proofmarket chain solidity                            the consumer contracts' sources a dApp imports (their folder)
    proofmarket admin transfer --to ADDR [--yes]          the market's and court's owner role (cli/admin_cmds.py)
    proofmarket model register MODEL_ID --price USDC [--owner-share BPS]       (cli/owner_cmds.py)
    proofmarket model activate|deactivate MODEL_ID;  proofmarket model price MODEL_ID USDC
    proofmarket earnings [--address ADDR]
    proofmarket request MODEL_ID --input INPUT.json [--salt ...]                (cli/request_cmds.py)
    proofmarket fulfill REQUEST_ID
    proofmarket refund REQUEST_ID

Amounts print in USDC; ``--json`` gives atomic units (6 decimals) for scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from proofmarket.cli import admin_cmds, market_cmds, owner_cmds, request_cmds
from proofmarket.cli.common import HomeOpt, JsonOpt, Run, command, open_market, say_chain, settings_for, tx_json
from proofmarket.cli.groups import group
from proofmarket.core.errors import ChainError

if TYPE_CHECKING:
    from proofmarket.chain.deploy_plan import DryRun

chain_app = group(help="The chain: a local devnet (anvil) and the market contracts.", no_args_is_help=True)

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
    command(app, "withdraw")(owner_cmds.withdraw_cmd)
    command(market_cmds.admin_app, "transfer")(admin_cmds.admin_transfer)


@command(chain_app, "up")
def chain_up(run: Run, port: Annotated[int | None, typer.Option(help="RPC port (default: a free one)")] = None) -> None:
    """Start a local anvil devnet in the background; its state persists in HOME/devnet."""
    from proofmarket.onchain import MarketHome, devnet_up

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
    from proofmarket.onchain import MarketHome, devnet_down

    status = devnet_down(MarketHome(run.settings.home))
    info = status.info
    said = f"devnet stopped (pid {info.pid}); state saved in {info.data_dir}" if status.changed and info \
        else "no devnet was running"
    run.done({"stopped": status.changed, "pid": info.pid if info else None}, said)


@command(chain_app, "status")
def chain_status(run: Run) -> None:
    """Say whether the background devnet is running."""
    from proofmarket.onchain import MarketHome, devnet_status

    status = devnet_status(MarketHome(run.settings.home))
    info = status.info
    said = f"devnet running at {info.rpc_url} (pid {info.pid})" if status.running and info else "no devnet running"
    run.done({"running": status.running, "rpc_url": info.rpc_url if info else None,
              "pid": info.pid if info else None}, said)


@command(chain_app, "solidity")
def chain_solidity(run: Run) -> None:
    """Where the Solidity sources a dApp builds on are (InferenceConsumer.sol for proven escrow results,
    AttestedConsumer.sol for the court's attested ones; shipped in the package): import "proofmarket/<file>" with
    the remapping this prints, and OpenZeppelin's under @openzeppelin/."""
    from proofmarket.solidity import FOLDER, SOURCES

    remapping = f"proofmarket/={FOLDER}/"
    run.done({"path": str(FOLDER), "files": list(SOURCES), "remapping": remapping},
             str(FOLDER), f"remapping: {remapping}  (and @openzeppelin/=<your OpenZeppelin contracts>/)")


ProfileOpt = Annotated[str | None, typer.Option("--profile", help="chain profile to deploy to (devnet, base-sepolia, "
                                                                  "base, ...): must be the RPC's chain")]


@command(chain_app, "deploy")
def chain_deploy(
    run: Run,
    usdc: Annotated[str | None, typer.Option(help="USDC token address (default: the profile's USDC; TestUSDC on "
                                                  "the devnet)")] = None,
    profile: ProfileOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="send nothing: list each transaction, its gas, cost "
                                                            "and the address it creates")] = False,
    record_dir: Annotated[Path | None, typer.Option("--record-dir", help="where the deployment record "
                                                                         "<profile>.json goes (default: "
                                                                         "HOME/deployments)")] = None,
) -> None:
    """Deploy the market contracts (once per chain: a live deployment is reused) and write the deployment record."""
    from proofmarket.chain.deploy_plan import DryRun
    from proofmarket.onchain import Market, format_usdc
    from proofmarket.onchain.service import connect, record_file

    settings = run.settings
    client = connect(settings)
    say_chain(settings.profile(client.chain_id))
    if dry_run:
        plan = Market.plan_deploy(settings, client=client, usdc=usdc, profile=profile)
        if not isinstance(plan, DryRun):
            run.done({"dryRun": True, "reused": True, **plan.to_json()},
                     f"a live deployment is recorded on chain id {plan.chain_id}: deploy would send nothing")
            return
        _print_plan(run, plan)
        return
    with Market.deploy(settings, client=client, usdc=usdc, profile=profile, record_dir=record_dir) as market:
        d = market.deployment
        record = record_file(settings, market.client.profile, record_dir)
        doc = {**d.to_json(), "prover": market.accounts.prover.address, "record": str(record),
               "platform_fee_bps": market.market.platform_fee_bps()}
    run.done(doc, f"chain id {d.chain_id}, deployer {d.deployer}" + (" (test USDC)" if d.test_usdc else ""),
             *(f"  {name:<18} {contract.address}  (block {contract.block})" for name, contract in d.contracts.items()),
             f"platform fee {doc['platform_fee_bps']} bps, min stake {format_usdc(d.config.min_stake)} USDC, "
             f"prover {doc['prover']}", f"deployment record: {record}")


def _eth(wei: int | None) -> str:
    return "?" if wei is None else f"{wei / 10**18:.8f} ETH"


def _print_plan(run: Run, plan: DryRun) -> None:
    lines = [f"dry run on chain {plan.profile} (id {plan.chain_id}) from {plan.deployer}: nothing is sent",
             f"fee: {plan.fee_note}"]
    for tx in plan.txs:
        gas = "not estimated (needs the creations above)" if tx.gas is None else f"{tx.gas:,} gas"
        lines.append(f"  nonce {tx.nonce:<4} {tx.action} {tx.contract:<18} {tx.address}  {gas}, "
                     f"{_eth(tx.cost_wei(plan.price_wei))}")
        lines.append(f"      args: {tx.args or '(none)'}")
    lines.append(f"total: {len(plan.txs)} transactions, {plan.total_gas:,} gas, {_eth(plan.total_cost_wei)} at "
                 "the current fee")
    run.done(plan.to_json(), *lines)


@command(chain_app, "verify-deployment")
def chain_verify_deployment(
    run: Run,
    record: Annotated[Path | None, typer.Option("--record", help="deployment record (default: HOME/deployments/"
                                                                 "<profile>.json, else the chain's deployment "
                                                                 "file)")] = None,
) -> None:
    """Compare each recorded contract's code on chain with the artifact built here (immutables masked):
    match, differs (and where) or no code. Exits 4 when any contract differs or has no code."""
    from proofmarket.chain.deploy_record import read_contracts, verify
    from proofmarket.onchain.service import connect, deployment_path, record_file

    settings = run.settings
    client = connect(settings)
    profile = settings.profile(client.chain_id)
    say_chain(profile)
    if record is None:
        record = record_file(settings, profile)
        if not record.exists():
            record = deployment_path(settings, client.chain_id)
    chain_id, contracts = read_contracts(record)
    checks = verify(client, chain_id, contracts)
    bad = [c for c in checks if not c.ok]
    doc: dict[str, Any] = {"record": str(record), "chainId": chain_id, "contracts": [c.to_json() for c in checks]}
    if bad:
        if not run.as_json:
            for c in checks:
                run.done({}, f"  {c.name:<18} {c.address}  {c.status}: {c.detail}")
        raise ChainError(f"{len(bad)} of {len(checks)} contracts in {record} do not match the code built here: "
                         + ", ".join(f"{c.name} ({c.status})" for c in bad), **doc)
    run.done(doc, f"{record}: all {len(checks)} contracts match (chain id {chain_id})",
             *(f"  {c.name:<18} {c.address}  {c.status}: {c.detail}" for c in checks))
