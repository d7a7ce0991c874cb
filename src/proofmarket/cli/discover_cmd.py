"""``proofmarket discover``: the nodes registered on the chain's ERC-8004 identity registry, each registration file
checked to name its agent, with the models its node sells (mode, task, price) and the agent's reputation."""

from __future__ import annotations

from typing import Annotated

import typer

from proofmarket.cli.common import Run, command
from proofmarket.core.errors import UsageError


def register(app: typer.Typer) -> None:
    command(app, "discover")(discover_cmd)


def discover_cmd(
    run: Run,
    task: Annotated[str | None, typer.Option("--task", help="only nodes selling a model of this task "
                                                            "(e.g. classification)")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="only proven or only attested models")] = None,
    max_price: Annotated[str | None, typer.Option("--max-price", help="only models at most this price, USDC per "
                                                                      "call (e.g. 0.01)")] = None,
    only_verified: Annotated[bool, typer.Option("--verified", help="leave out agents whose registration file does "
                                                                   "not check out")] = False,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", envvar="PROOFMARKET_RPC_URL", help="the chain's RPC "
                                                "(default: this home's devnet)")] = None,
    identity_registry: Annotated[str | None, typer.Option("--identity-registry", help="the ERC-8004 identity "
                                                          "registry (default: per --registries)")] = None,
    which: Annotated[str, typer.Option("--registries", help="own: the market deployment's registries (this "
                                            "home's record); reference: the ERC-8004 reference registries the "
                                            "chain's profile names (Base, Base Sepolia)")] = "own",
    limit: Annotated[int, typer.Option("--limit", help="the most agents read")] = 200,
) -> None:
    """List the nodes registered on the chain (ERC-8004 identities): each one's registration file is fetched from
    the URI the chain holds and checked to name that agent; then its node's models and prices, and its reputation."""
    from proofmarket.chain import ChainClient, load_deployment
    from proofmarket.core.units import parse_usdc
    from proofmarket.onchain.service import connect, deployment_path
    from proofmarket.sdk.discovery import discover

    if mode not in (None, "proven", "attested"):
        raise UsageError("--mode takes proven or attested")
    client = ChainClient(rpc_url) if rpc_url else connect(run.settings)
    reputation = None
    if which not in ("own", "reference"):
        raise UsageError("--registries takes own or reference")
    if identity_registry is None and which == "reference":
        reference = client.profile.erc8004
        if reference is None:
            raise UsageError(f"chain {client.chain_id} has no ERC-8004 reference registries in its profile: use "
                             "--registries own or give --identity-registry ADDRESS", chain_id=client.chain_id)
        identity_registry, reputation = reference
    if identity_registry is None:
        path = deployment_path(run.settings, client.chain_id)
        deployment = load_deployment(path)
        registries = deployment.erc8004 if deployment is not None else None
        if registries is None:
            raise UsageError(f"no ERC-8004 registries of chain {client.chain_id} are recorded in {path}: give "
                             "--identity-registry ADDRESS", chain_id=client.chain_id)
        identity_registry, reputation = registries["IdentityRegistry"], registries["ReputationRegistry"]
    cap = parse_usdc(max_price, what="--max-price") if max_price is not None else None
    found = discover(client.rpc_url, identity_registry, reputation_registry=reputation, task=task, mode=mode,
                     max_price_atomic=cap, only_verified=only_verified, limit=limit)
    lines = [f"{len(found)} node(s) on {identity_registry} (chain {client.chain_id})"]
    for node in found:
        state = "verified" if node.verified else f"unverified: {node.error}"
        score = f", reputation {node.reputation['average']} ({node.reputation['count']})" if node.reputation and \
            node.reputation.get("count") else ""
        lines.append(f"agent {node.agent_id} {node.name or ''} {node.node or node.uri} ({state}{score})")
        lines.extend(f"  {m['mode']:<8} {m['price'] or '0'} USDC  {m['id']}  {m['name'] or ''}"
                     f"{'  ' + m['task'] if m['task'] else ''}" for m in node.models)
    run.done({"chain_id": client.chain_id, "identity_registry": identity_registry,
              "nodes": [n.to_json() for n in found]}, *lines)
