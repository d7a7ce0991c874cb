"""The admin role of a deployment: who owns the InferenceMarket and the AttestationCourt (OpenZeppelin Ownable),
and handing it over (to a multisig, say). The ModelRegistry and the ERC-8004 contracts have no owner."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient, TxResult
from proofmarket.chain.deploy import Deployment


@dataclass(frozen=True)
class Owned:
    name: str  # the contract's name in the deployment
    address: str


def owned_contracts(deployment: Deployment) -> list[Owned]:
    """The deployment's contracts that have an owner (the admin role), market first."""
    out = [Owned("InferenceMarket", deployment.market)]
    if deployment.court is not None:
        out.append(Owned("AttestationCourt", deployment.court))
    return out


def owner_of(client: ChainClient, contract: Owned) -> str:
    bound = client.contract(contract.address, load_artifact(contract.name).abi)
    return Web3.to_checksum_address(client.call(bound.functions.owner()))


def transfer_ownership(client: ChainClient, contract: Owned, to: str, sender: LocalAccount) -> TxResult:
    """``transferOwnership(to)`` on ``contract``, signed by its current owner (the contract refuses anyone else)."""
    bound = client.contract(contract.address, load_artifact(contract.name).abi)
    return client.transact(bound.functions.transferOwnership(Web3.to_checksum_address(to)), sender)
