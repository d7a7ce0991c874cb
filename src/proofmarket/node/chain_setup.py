"""The chain a paid node runs on, set up by the composition root: its RPC (the devnet of ``proofmarket chain up``
when none is named, started here if none runs), the USDC token (the deployment's; the devnet deploys TestUSDC), and
the node's accounts (its keystore, or ``PROOFMARKET_NODE_KEY`` on the devnet: ``proofmarket.chain.keystore``;
dev accounts on the devnet only)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from proofmarket.chain.client import ChainClient
from proofmarket.chain.deploy import deploy, is_live, load_deployment
from proofmarket.chain.devkeys import dev_account
from proofmarket.chain.home import MarketHome
from proofmarket.chain.keystore import resolve_key
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.profiles import profile_for
from proofmarket.core.settings import Settings, X402Settings
from proofmarket.onchain.accounts import DEV_ROLES
from proofmarket.payments.onchain import NodeChain

log = logging.getLogger("proofmarket.node")
# dev accounts on the devnet: receipts are signed by the prover role, settlement gas paid by a key that
# nothing else sends from (two senders on one account would race for nonces)
DEV_FACILITATOR_INDEX = 8


def node_chain(settings: Settings, extra: X402Settings) -> NodeChain:
    rpc_url = settings.chain.rpc_url or _devnet_rpc(settings.home)
    client = ChainClient(rpc_url)
    chain_id = client.chain_id
    dev_keys = settings.profile(chain_id).dev_keys_allowed  # also: PROOFMARKET_CHAIN agrees with the RPC
    own = resolve_key("node", settings, chain_id, extra)
    node = own or (dev_account(DEV_ROLES["prover"], chain_id) if dev_keys else None)
    if node is None:
        raise UsageError(f"chain id {chain_id} is not the devnet: the node's key signs receipts and settlements, "
                         "make its keystore with 'proofmarket keys new --role node' to take payments")
    facilitator = dev_account(DEV_FACILITATOR_INDEX, chain_id) if dev_keys and own is None else node
    payee = extra.payee or (dev_account(DEV_ROLES["owner"], chain_id).address if dev_keys else node.address)
    return NodeChain(client, rpc_url, _usdc(settings, extra, client), node, facilitator, payee)


def _devnet_rpc(home: Path) -> str:
    """The devnet of ``proofmarket chain up``; started in the background when none answers."""
    from proofmarket.onchain.node import devnet_up

    status = devnet_up(MarketHome(home))
    assert status.info is not None
    if status.changed:
        log.info("started a devnet at %s (stop it with 'proofmarket chain down')", status.info.rpc_url)
    return status.info.rpc_url


def _usdc(settings: Settings, extra: X402Settings, client: ChainClient) -> str:
    if extra.usdc_address:
        return to_checksum_address(extra.usdc_address)
    path = settings.chain.deployment_file or MarketHome(settings.home).deployment_file(client.chain_id)
    found = load_deployment(path)
    if found is not None and is_live(client, found):
        return found.usdc
    if not profile_for(client.chain_id).test_usdc_allowed:
        raise ChainError(f"no USDC token for chain id {client.chain_id}: set PROOFMARKET_USDC_ADDRESS or deploy "
                         f"the market ({path})", chain_id=client.chain_id)
    deployed = deploy(client, dev_account(DEV_ROLES["admin"], client.chain_id), path)  # TestUSDC, minted
    return deployed.usdc


def paid_node_account(settings: Settings) -> LocalAccount | None:
    """The key a paid node signs with (receipts, attested bundles), as ``node_chain`` picks it, for a process that
    takes no payments itself (a Celery worker): its attestations are then signed by the node's identity. None when
    payments are off (the node key of ``systems.attested.signer`` then)."""
    if settings.payments.mode != "on":
        return None
    from proofmarket.chain.client import node_chain_id

    return _node_account(settings, X402Settings(), node_chain_id(settings))


def _node_account(settings: Settings, extra: X402Settings, chain_id: int) -> LocalAccount | None:
    """The node's key (its keystore, or PROOFMARKET_NODE_KEY; else the owner's: ``resolve_key``); on a chain
    that allows dev keys, the devnet's prover account; else None."""
    own = resolve_key("node", settings, chain_id, extra)
    if own is not None:
        return own
    return dev_account(DEV_ROLES["prover"], chain_id) if settings.profile(chain_id).dev_keys_allowed else None


def fixed_contracts_ready(client: ChainClient, addresses: tuple[str, ...], install: Callable[[ChainClient], object],
                          mode: str, variable: str, what: str) -> bool:
    """Whether the contracts a payment scheme needs at fixed addresses (the x402 SDK's) are on the chain: on a chain
    whose profile allows dev contracts (the devnet) they are installed when missing (``install``); elsewhere ``mode``
    (the setting ``variable``) ``on`` refuses to start without them and ``auto`` leaves the scheme out."""
    missing = [a for a in addresses if not client.code_at(a)]
    if not missing:
        return True
    if client.profile.test_usdc_allowed:
        install(client)
        return True
    if mode == "on":
        raise UsageError(f"{variable}=on, but chain {client.chain_id} has no code at {', '.join(missing)} ({what})",
                         missing=missing)
    log.info("no %s at %s on chain %s: not offered", what, ", ".join(missing), client.chain_id)
    return False
