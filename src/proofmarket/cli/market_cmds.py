"""CLI commands for provers and the market's admin: a thin shell over the market contract.

    proofmarket prover status [ADDRESS]            # authorised? stake, pending unstake, record
    proofmarket prover stake [AMOUNT]              # approve + stake (default: what the minimum still needs)
    proofmarket prover unstake AMOUNT              # start the unstake delay for AMOUNT
    proofmarket prover withdraw                    # take the unstaked amount back once the delay is over
    proofmarket prover register-agent --uri URL    # ERC-8004 identity: the agent's registration file URL
    proofmarket admin status                       # paused, fee, slash share, minimum stake, delay, fees held
    proofmarket admin authorize ADDRESS [--revoke] # let a prover fulfil requests (or stop it)
    proofmarket admin pause | unpause              # refuse (or accept again) new requests
    proofmarket admin fee BPS                      # the platform fee of new requests (at most 1000 = 10%)
    proofmarket admin withdraw-fees TO AMOUNT      # send collected platform fees to TO
    proofmarket admin court [--window S ...]       # the AttestationCourt's settings (window, quorum, sample...)

Who signs: on the devnet, anvil's dev accounts by role (prover, admin); elsewhere the owner's keystore
(``proofmarket keys new --role owner``). The contract refuses what the signer may not do (a revert names the reason).
Amounts print in USDC; ``--json`` gives atomic units (6 decimals).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from proofmarket.cli.common import Run, checked_address, command, tx_json
from proofmarket.cli.groups import group
from proofmarket.cli.output import emit_json, out
from proofmarket.core.errors import UsageError

prover_app = group(help="Prover: authorisation status, stake and unstake on the market.", no_args_is_help=True)
admin_app = group(help="Market admin: pause, platform fee, authorised provers, collected fees.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(prover_app, name="prover")
    app.add_typer(admin_app, name="admin")


# --- prover -------------------------------------------------------------------------------------
ProverArg = Annotated[str | None, typer.Argument(help="a prover address (default: this node's prover)")]
StakeArg = Annotated[str | None, typer.Argument(help="USDC to add (default: what the minimum still needs)")]


@command(prover_app, "status")
def prover_status(run: Run, address: ProverArg = None) -> None:
    """Whether ADDRESS may fulfil requests: authorised, stake against the minimum, record."""
    from proofmarket.onchain import format_usdc

    with run.market() as market:
        who = address or market.accounts.prover.address
        info = market.market.get_prover(who)
        minimum = market.market.min_stake()
        eligible = market.market.is_eligible(who)
        agent = _agent(market, who)
        court = market.court
        court_stake = None if court is None else {"node": court.stake_of(who, validator=False),
                                                   "validator": court.stake_of(who, validator=True),
                                                   "node_min": court.params().node_min_stake}
    if run.as_json:
        emit_json({"ok": True, "address": info.address, "authorized": info.authorized, "eligible": eligible,
                   "stake": info.stake, "min_stake": minimum, "pending_unstake": info.pending_unstake,
                   "unlock_at": info.unlock_at, "fulfilled": info.fulfilled, "failed": info.failed,
                   "expired": info.expired, "erc8004": agent, "court_stake": court_stake})
        return
    out.print(f"prover {info.address}: {'eligible' if eligible else 'not eligible'} to fulfil requests")
    out.print(f"  authorised {'yes' if info.authorized else 'no'}, stake {format_usdc(info.stake)} USDC "
              f"(minimum {format_usdc(minimum)})")
    if info.pending_unstake:
        out.print(f"  unstaking {format_usdc(info.pending_unstake)} USDC, withdrawable from {info.unlock_at}")
    out.print(f"  record: {info.fulfilled} fulfilled, {info.failed} failed, {info.expired} expired")
    if court_stake is not None:
        out.print(f"  AttestationCourt stake: node {format_usdc(court_stake['node'])} USDC (minimum "
                  f"{format_usdc(court_stake['node_min'])}), validator {format_usdc(court_stake['validator'])} USDC")
    if agent is None:
        out.print("  ERC-8004: no agent identity (proofmarket prover register-agent --uri URL)")
    else:
        rep, val = agent["reputation"], agent["validation"]
        out.print(f"  ERC-8004: agent {agent['agent_id']} on {agent['registry']}; reputation {rep['average']:.2f} "
                  f"over {rep['count']} feedback, validations {val['average']:.0f}/100 over {val['count']}")


def _agent(market: Any, address: str) -> dict[str, Any] | None:
    """The address's ERC-8004 identity and scores, or None without registries or identity."""
    registries = market.erc8004
    agent_id = market.agent_id(address) if registries is not None else None
    if agent_id is None:
        return None
    return {"agent_id": agent_id, "registry": registries.identity.registry_id(),
            "uri": registries.identity.agent_uri(agent_id),
            "reputation": registries.reputation.summary(agent_id).to_json(),
            "validation": registries.validation.summary(agent_id).to_json()}


@command(prover_app, "register-agent")
def prover_register_agent(
    run: Run,
    uri: Annotated[str, typer.Option("--uri", help="the agent's registration file, e.g. "
                                                   "https://node.example/.well-known/agent-registration.json")],
) -> None:
    """Register this node's prover account as an ERC-8004 agent (or update its registration file URL)."""
    if not uri.startswith(("https://", "http://", "ipfs://")):
        raise UsageError("--uri must be an https://, http:// or ipfs:// URL of the registration file")
    with run.market() as market:
        agent_id, tx = market.register_agent(uri)  # refused (chain_error) without ERC-8004 registries
        assert market.erc8004 is not None
        registry = market.erc8004.identity.registry_id()
    if run.as_json:
        emit_json({"ok": True, "agent_id": agent_id, "registry": registry, "uri": uri,
                   "tx": tx.tx_hash if tx else None})
        return
    out.print(f"agent {agent_id} on {registry}: {uri}" + (f" (tx {tx.tx_hash})" if tx else " (unchanged)"))


@command(prover_app, "stake")
def prover_stake(run: Run, amount: StakeArg = None) -> None:
    """Approve and stake AMOUNT USDC for the signing prover."""
    from proofmarket.onchain import format_usdc, parse_usdc

    with run.market() as market:
        prover = market.accounts.prover
        atomic, tx = market.stake_prover(parse_usdc(amount, what="the stake") if amount is not None else None)
        stake = market.market.get_prover(prover.address).stake
    if run.as_json:
        emit_json({"ok": True, "address": prover.address, "added": atomic, "stake": stake, "tx": tx_json(tx)})
        return
    if tx is None:
        out.print(f"prover {prover.address} already stakes {format_usdc(stake)} USDC, the minimum: nothing added")
        return
    out.print(f"prover {prover.address}: staked {format_usdc(atomic)} USDC, now {format_usdc(stake)} USDC")
    out.print(f"  tx {tx.tx_hash} ({tx.gas_used:,} gas)")


@command(prover_app, "unstake")
def prover_unstake(
    run: Run,
    amount: Annotated[str, typer.Argument(help="USDC to unstake")],
) -> None:
    """Start unstaking AMOUNT USDC; 'prover withdraw' takes it back once the unstake delay is over."""
    from proofmarket.onchain import format_usdc, parse_usdc

    with run.market() as market:
        prover = market.accounts.prover
        tx = market.market.request_unstake(parse_usdc(amount, what="the amount"), prover)
        info = market.market.get_prover(prover.address)
    if run.as_json:
        emit_json({"ok": True, "address": prover.address, "pending_unstake": info.pending_unstake,
                   "unlock_at": info.unlock_at, "stake": info.stake, "tx": tx_json(tx)})
        return
    out.print(f"prover {prover.address}: unstaking {format_usdc(info.pending_unstake)} USDC, withdrawable from "
              f"{info.unlock_at}")
    out.print(f"  tx {tx.tx_hash} ({tx.gas_used:,} gas)")


@command(prover_app, "withdraw")
def prover_withdraw(run: Run) -> None:
    """Take back the unstaked amount once its delay is over."""
    from proofmarket.onchain import format_usdc

    with run.market() as market:
        prover = market.accounts.prover
        pending = market.market.get_prover(prover.address).pending_unstake
        if pending == 0:
            raise UsageError("nothing is being unstaked: run 'proofmarket prover unstake AMOUNT' first")
        tx = market.market.unstake(prover)
    if run.as_json:
        emit_json({"ok": True, "address": prover.address, "withdrawn": pending, "tx": tx_json(tx)})
        return
    out.print(f"prover {prover.address}: withdrew {format_usdc(pending)} USDC (tx {tx.tx_hash})")


# --- admin --------------------------------------------------------------------------------------
@command(admin_app, "status")
def admin_status(run: Run) -> None:
    """The market's settings: paused, platform fee, slash share, minimum stake, unstake delay, fees held."""
    from proofmarket.onchain import format_usdc

    with run.market() as market:
        m = market.market
        state: dict[str, Any] = {"market": m.address, "paused": m.paused(),
                                 "platform_fee_bps": m.platform_fee_bps(),
                                 "slash_bps": m.slash_bps(), "min_stake": m.min_stake(),
                                 "unstake_delay_s": m.unstake_delay(), "platform_balance": m.platform_balance(),
                                 "requests": m.request_count()}
    if run.as_json:
        emit_json({"ok": True, **state})
        return
    out.print(f"market {state['market']}: {'PAUSED' if state['paused'] else 'open'}, {state['requests']} requests")
    out.print(f"  platform fee {state['platform_fee_bps']} bps, slash share {state['slash_bps']} bps")
    out.print(f"  minimum stake {format_usdc(state['min_stake'])} USDC, unstake delay {state['unstake_delay_s']} s")
    out.print(f"  platform fees held {format_usdc(state['platform_balance'])} USDC")


@command(admin_app, "court")
def admin_court(
    run: Run,
    window: Annotated[int | None, typer.Option(help="challenge window, seconds (60 s to 30 days)")] = None,
    vote_window: Annotated[int | None, typer.Option(help="vote window after a challenge, seconds")] = None,
    response_window: Annotated[int | None, typer.Option(help="time a node has to publish a bundle challenged "
                                                             "as withheld, seconds")] = None,
    unbond_delay: Annotated[int | None, typer.Option(help="wait between a validator's unstake and its "
                                                          "withdrawal, seconds")] = None,
    quorum_bps: Annotated[int | None, typer.Option(help="share of the eligible stake that must vote for a "
                                                        "decision at the vote's end (bps)")] = None,
    sample_bps: Annotated[int | None, typer.Option(help="share of results each validator re-checks (bps)")] = None,
    slash_bps: Annotated[int | None, typer.Option(help="share of a losing node's stake taken (bps)")] = None,
    reward_bps: Annotated[int | None, typer.Option(help="share of a slash paid to the challenger (bps)")] = None,
    voter_slash_bps: Annotated[int | None, typer.Option(help="share of its weight a losing voter loses to the "
                                                             "winners (bps, at most 5000)")] = None,
    fee_bps: Annotated[int | None, typer.Option(help="platform fee on paid court requests (bps, at most 1000)")]
    = None,
    bond: Annotated[str | None, typer.Option(help="challenge bond, USDC")] = None,
    node_stake: Annotated[str | None, typer.Option(help="minimum node stake, USDC")] = None,
    validator_stake: Annotated[str | None, typer.Option(help="minimum validator stake, USDC")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="apply the scheduled change once its delay passed "
                                                        "(anyone may)")] = False,
) -> None:
    """Show the AttestationCourt's settings; with options, schedule a change (admin): it applies after the
    court's fixed delay (``--apply``), to requests created after that; open requests keep theirs. The contract
    refuses values out of its bounds and names the reason."""
    from dataclasses import asdict, replace

    from proofmarket.onchain import format_usdc, parse_usdc

    changes = {k: v for k, v in {"window": window, "vote_window": vote_window, "response_window": response_window,
                                 "unbond_delay": unbond_delay, "quorum_bps": quorum_bps, "sample_bps": sample_bps,
                                 "slash_bps": slash_bps, "challenger_reward_bps": reward_bps,
                                 "voter_slash_bps": voter_slash_bps, "platform_fee_bps": fee_bps}.items()
               if v is not None}
    for name, value in (("challenge_bond", bond), ("node_min_stake", node_stake),
                        ("validator_min_stake", validator_stake)):
        if value is not None:
            changes[name] = parse_usdc(value, what=name)
    tx = None
    with run.market() as market:
        court = market.court
        if court is None:
            raise UsageError("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
        if changes:
            tx = court.schedule_params(replace(court.params(), **changes), market.accounts.admin)
        elif apply:
            tx = court.apply_params(market.accounts.admin)
        params, eta, delay = court.params(), court.pending_params_eta(), court.params_delay()
        address = court.address
    if run.as_json:
        emit_json({"ok": True, "court": address, **asdict(params), "params_delay_s": delay,
                   "scheduled_eta": eta or None, "tx": tx_json(tx) if tx else None})
        return
    out.print(f"court {address}: window {params.window} s, vote window {params.vote_window} s, response window "
              f"{params.response_window} s, quorum {params.quorum_bps} bps of the eligible stake, sample "
              f"{params.sample_bps} bps")
    out.print(f"  slash {params.slash_bps} bps (challenger reward {params.challenger_reward_bps} bps of it), losing "
              f"voters {params.voter_slash_bps} bps, platform fee {params.platform_fee_bps} bps, bond "
              f"{format_usdc(params.challenge_bond)} USDC")
    out.print(f"  minimum stake: node {format_usdc(params.node_min_stake)} USDC, validator "
              f"{format_usdc(params.validator_min_stake)} USDC, unbonding {params.unbond_delay} s")
    if eta:
        out.print(f"  a change is scheduled: it applies from chain time {eta} ('proofmarket admin court --apply'; "
                  f"the delay is {delay} s)" + (f", tx {tx.tx_hash}" if tx else ""))
    elif tx:
        out.print(f"  applied in tx {tx.tx_hash}")


@command(admin_app, "authorize")
def admin_authorize(
    run: Run,
    address: Annotated[str, typer.Argument(help="the prover's address")],
    revoke: Annotated[bool, typer.Option("--revoke", help="withdraw the authorisation instead")] = False,
) -> None:
    """Authorise ADDRESS to fulfil requests (it must also stake the minimum), or revoke it."""
    _admin(run, lambda market: market.market.set_prover_authorized(checked_address(address), not revoke,
                                                                  market.accounts.admin),
           f"{'revoked' if revoke else 'authorised'} prover {address}")


@command(admin_app, "pause")
def admin_pause(run: Run) -> None:
    """Refuse new requests (open ones can still be fulfilled or refunded)."""
    _admin(run, lambda market: market.market.pause(market.accounts.admin), "paused the market")


@command(admin_app, "unpause")
def admin_unpause(run: Run) -> None:
    """Accept new requests again."""
    _admin(run, lambda market: market.market.unpause(market.accounts.admin), "unpaused the market")


@command(admin_app, "fee")
def admin_fee(
    run: Run,
    bps: Annotated[int, typer.Argument(help="platform fee in basis points (100 = 1%; at most 1000)", min=0)],
) -> None:
    """Schedule a new platform fee for new requests (open requests keep theirs). It applies after the
    market's parameter delay ('admin apply'); on a market without delay (the devnet) at once."""
    _admin(run, lambda market: market.change_params(platform_fee_bps=bps),
           f"platform fee {bps} bps scheduled (applied at once when the market has no parameter delay)")


@command(admin_app, "apply")
def admin_apply(run: Run) -> None:
    """Apply the scheduled parameter change once its delay has passed."""
    _admin(run, lambda market: market.market.apply_params(market.accounts.admin), "applied the scheduled parameters")


@command(admin_app, "withdraw-fees")
def admin_withdraw_fees(
    run: Run,
    to: Annotated[str, typer.Argument(help="the address to send the fees to")],
    amount: Annotated[str, typer.Argument(help="USDC to send")],
) -> None:
    """Send AMOUNT USDC of the collected platform fees to TO."""
    from proofmarket.onchain import parse_usdc

    atomic = parse_usdc(amount, what="the amount")
    _admin(run, lambda market: market.market.withdraw_platform(checked_address(to), atomic, market.accounts.admin),
           f"sent {amount} USDC of platform fees to {to}")


def _admin(run: Run, action: Any, done: str) -> None:
    with run.market() as market:
        tx = action(market)
    if run.as_json:
        emit_json({"ok": True, "done": done, "tx": tx_json(tx)})
        return
    out.print(f"{done} (tx {tx.tx_hash}, {tx.gas_used:,} gas)")
