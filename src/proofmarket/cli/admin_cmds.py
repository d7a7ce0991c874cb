"""``proofmarket admin transfer``: hand the market's admin role (the owner of the InferenceMarket and the
AttestationCourt) to another address, a multisig say. Registered on the ``admin`` group of cli/market_cmds.py.

Off the devnet an address without contract code is refused (a typo, or a plain key where a multisig was meant)
unless ``--allow-eoa``. Each transaction is printed; the command asks before sending unless ``--yes``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from proofmarket.cli.common import Run, checked_address, tx_json
from proofmarket.cli.output import out
from proofmarket.core.errors import UsageError


def admin_transfer(
    run: Run,
    to: Annotated[str, typer.Option("--to", help="the new owner (a multisig's address)")],
    yes: Annotated[bool, typer.Option("--yes", help="send without asking")] = False,
    allow_eoa: Annotated[bool, typer.Option("--allow-eoa", help="accept an address without contract code off the "
                                                                "devnet")] = False,
) -> None:
    """Hand the owner (admin) role of the InferenceMarket and the AttestationCourt to another address; the old
    admin is refused afterwards."""
    from proofmarket.chain.ownership import owned_contracts, owner_of, transfer_ownership

    target = checked_address(to)
    with run.market() as market:
        client, signer = market.client, market.accounts.admin
        if not client.code_at(target) and not client.profile.dev_keys_allowed and not allow_eoa:
            raise UsageError(f"{target} has no contract code on chain {client.profile.name}: a multisig is a "
                             "contract (check the address, or pass --allow-eoa to hand the role to a plain account)",
                             to=target)
        planned = []
        for contract in owned_contracts(market.deployment):
            owner = owner_of(client, contract)
            if owner == target:
                continue
            if owner != signer.address:
                raise UsageError(f"{contract.name} at {contract.address} is owned by {owner}, not by this signer "
                                 f"({signer.address}): only its owner can transfer it", contract=contract.name,
                                 owner=owner)
            planned.append(contract)
        if not run.as_json:
            for contract in planned:
                out.print(f"  {contract.name} {contract.address}: transferOwnership({target}) from {signer.address}")
        if not planned:
            run.done({"to": target, "transactions": []}, f"{target} already owns every contract: nothing to send")
            return
        if not yes and not typer.confirm(f"send {len(planned)} transaction(s)?", default=False):
            raise UsageError("nothing was sent (not confirmed; --yes sends without asking)")
        sent: list[dict[str, Any]] = []
        for contract in planned:
            tx = transfer_ownership(client, contract, target, signer)
            sent.append({"contract": contract.name, "address": contract.address, "tx": tx_json(tx),
                         "owner": owner_of(client, contract)})
    run.done({"to": target, "transactions": sent},
             *(f"  {s['contract']} now owned by {s['owner']} (tx {s['tx']['hash']})" for s in sent))
