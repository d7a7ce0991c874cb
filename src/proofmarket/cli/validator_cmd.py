"""``proofmarket validator run``: a staked validator of attested results (see ``proofmarket.validator.process``).

    proofmarket validator run [--node URL ...] [--port 9464] [--stake USDC] [--dev-account N]

Who signs: the validator's keystore (``proofmarket keys new --role validator``: PROOFMARKET_VALIDATOR_KEYSTORE or
HOME/keys/validator.json), or on the devnet the plain key in PROOFMARKET_VALIDATOR_KEY or ``--dev-account N`` (an
anvil dev account, 4-9: 0-3 are the market's roles). The models it re-executes must be in this home's store, however
they arrived: ``proofmarket compile --mode attested DIR`` (the same files give the same model id), ``proofmarket
import model.car`` (the owner's export) or ``proofmarket import MODEL_ID --node URL`` (fetched by CID, each artifact
checked). Each held model's listings are declared at start and whenever a model or a listing appears; /health
answers 503 (not ready) while it can vote on none. A result whose model is not held here is counted
``cannot_check`` and neither challenged nor voted on.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from proofmarket.cli.chain_cmds import HomeOpt
from proofmarket.cli.common import open_market
from proofmarket.cli.groups import group
from proofmarket.cli.output import fail, out
from proofmarket.core.errors import ProofMarketError, UsageError

validator_app = group(help="Validators of attested results: stake, re-check a random share, challenge, vote.",
                            no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(validator_app, name="validator")


@validator_app.command("run")
def validator_run(
    node: Annotated[list[str] | None, typer.Option(
        "--node", help="a node URL to fetch committed bundles from (repeatable; nodes with an ERC-8004 "
                       "registration file are found without it)")] = None,
    port: Annotated[int, typer.Option(help="port of /metrics and /health (0: none)")] = 9464,
    host: Annotated[str, typer.Option(help="address of /metrics and /health")] = "127.0.0.1",
    stake: Annotated[str | None, typer.Option(help="USDC to stake (default: the court's validator minimum)")] = None,
    dev_account: Annotated[int | None, typer.Option(
        "--dev-account", help="devnet only: sign with anvil dev account N (4-9)")] = None,
    poll: Annotated[float, typer.Option(help="seconds between polls")] = 1.0,
    threads: Annotated[int | None, typer.Option(help="torch threads for re-execution")] = None,
    once: Annotated[bool, typer.Option("--once", help="poll once and exit (for scripts)")] = False,
    home: HomeOpt = None,
) -> None:
    """Stake, declare the listings of the attested models held here (only declared stake weighs on a model's
    requests), follow the AttestationCourt, re-execute the results drawn for this validator, challenge the ones
    that differ and vote on every challenge. Runs until interrupted (SIGINT/SIGTERM)."""
    from proofmarket.chain.court import AttestationCourt
    from proofmarket.chain.devkeys import dev_account as dev_key
    from proofmarket.chain.keystore import resolve_key
    from proofmarket.core.logs import configure
    from proofmarket.core.settings import Settings
    from proofmarket.onchain import parse_price
    from proofmarket.validator.process import Validator, serve_metrics

    configure((Settings(home=home) if home else Settings()).api.log_format)
    try:
        with open_market(home) as market:
            if market.deployment.court is None:
                raise UsageError("this market's deployment has no AttestationCourt: run 'proofmarket chain deploy'")
            chain_id = market.client.chain_id
            if dev_account is not None:
                account = dev_key(dev_account, chain_id)
            else:
                found = resolve_key("validator", market.workspace.settings, chain_id)
                if found is None:
                    raise UsageError("no validator key: make its keystore with 'proofmarket keys new --role validator' "
                                     "(on the devnet PROOFMARKET_VALIDATOR_KEY or --dev-account N also do)")
                account = found
            registries = market.erc8004
            court = AttestationCourt(market.client, market.deployment.court)
            state = market.workspace.settings.home / "validator" / f"{chain_id}-{account.address.lower()}.json"
            validator = Validator(market.client, court, account, market.workspace, state_path=state,
                                  node_urls=node or [], identity=None if registries is None else registries.identity,
                                  from_block=market.deployment.contracts["AttestationCourt"].block, poll_s=poll,
                                  threads=threads)
            staked = validator.ensure_stake(parse_price(stake) if stake else None)
            out.print(f"validator {account.address}: staked {staked / 1e6:.2f} USDC on court {court.address}; "
                      f"declared for {len(court.declared_models(account.address))} listing(s) of models held here")
            for listing in sorted(validator.voting.values(), key=lambda v: v["listing"]):
                out.print(f"  votes on listing {listing['listing']} (model {listing['model_id']}) for requests "
                          f"committed after block {listing['from_block']}")
            ready, reason = validator.ready()
            if not ready:
                out.print(f"[bold yellow]not ready[/]: {reason} (/health answers 503 until then)")
            if once:
                judged = validator.poll_once()
                out.print(f"judged {judged} result(s); state in {state}")
                return
            server = serve_metrics(validator, host, port) if port else None
            if server is not None:
                out.print(f"metrics at http://{host}:{server.server_address[1]}/metrics, health at /health")
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            validator.run(stop)
            if server is not None:
                server.shutdown()
    except ProofMarketError as exc:
        raise fail(exc, False) from exc
