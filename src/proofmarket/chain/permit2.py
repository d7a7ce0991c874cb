"""Permit2 and x402's ``upto`` proxy at the SDK's fixed addresses (what x402's ``upto`` scheme settles through).

On public chains Permit2 is at ``PERMIT2_ADDRESS`` and the x402 project deploys its upto proxy at
``X402_UPTO_PERMIT2_PROXY_ADDRESS``. On a chain whose profile allows test contracts (the devnet) ``install_upto`` puts
this project's builds there (``contracts/Permit2.sol``, ``contracts/UptoPermit2Proxy.sol``): each is deployed
normally, then its runtime code is copied to the fixed address with ``anvil_setCode`` (neither keeps
constructor-set storage or immutables). A payer approves Permit2 once (``approve_permit2``); ``nonce_used`` reads
whether an upto authorization was used (or given up) on chain.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from x402.mechanisms.evm.constants import PERMIT2_ADDRESS, X402_UPTO_PERMIT2_PROXY_ADDRESS

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import UsdcToken
from proofmarket.chain.devkeys import dev_account
from proofmarket.core.errors import UsageError

INSTALLER_INDEX = 0  # the devnet's admin account deploys the templates whose code is copied
MAX_ALLOWANCE = 2**256 - 1

__all__ = ["PERMIT2_ADDRESS", "X402_UPTO_PERMIT2_PROXY_ADDRESS", "approve_permit2", "install_upto",
           "nonce_used", "permit2_allowance"]


def install_upto(client: ChainClient, deployer: LocalAccount | None = None) -> None:
    """Put Permit2 and the upto proxy at the SDK's addresses (one already there is left as it is). Only where the
    chain's profile allows test contracts."""
    if not client.profile.test_usdc_allowed:
        raise UsageError(f"chain {client.profile.name} is not a devnet: Permit2 and the x402 upto proxy are deployed "
                         "there by their projects, not installed by proofmarket", chain=client.profile.name)
    deployer = deployer or dev_account(INSTALLER_INDEX, client.chain_id)
    for name, address in (("Permit2", PERMIT2_ADDRESS), ("UptoPermit2Proxy", X402_UPTO_PERMIT2_PROXY_ADDRESS)):
        client.names[address.lower()] = name  # the gas report's name for it
        if client.code_at(address):
            continue
        template, _ = client.deploy(load_artifact(name), deployer)
        client.rpc("anvil_setCode", [address, "0x" + client.code_at(template).hex()])


def permit2_allowance(client: ChainClient, token: str, owner: str) -> int:
    """What ``owner`` lets Permit2 move of ``token`` (any ERC-20: the standard ``allowance``)."""
    return UsdcToken(client, token).allowance(owner, PERMIT2_ADDRESS)


def approve_permit2(client: ChainClient, token: str, owner: LocalAccount, amount: int = MAX_ALLOWANCE) -> str | None:
    """Let Permit2 move ``owner``'s ``token`` (once per token: each upto payment is then a signature only). Nothing is
    sent when the allowance already reaches ``amount``; returns the transaction hash otherwise."""
    erc20 = UsdcToken(client, token)
    if erc20.allowance(owner.address, PERMIT2_ADDRESS) >= amount:
        return None
    return erc20.approve(PERMIT2_ADDRESS, amount, owner).tx_hash


def nonce_used(client: ChainClient, owner: str, nonce: int) -> bool:
    """Permit2's bit for ``nonce`` of ``owner`` is set: the authorization was used, or its owner gave it up."""
    permit2 = client.contract(PERMIT2_ADDRESS, load_artifact("Permit2").abi)
    word = int(client.call(permit2.functions.nonceBitmap(owner, nonce >> 8)))
    return bool(word >> (nonce & 0xFF) & 1)
