"""Rehearsal tooling, not a user path: a local anvil answering as a real chain (e.g. Base Sepolia, chain 84532) with
USDC code at that chain's canonical USDC address under its real EIP-712 domain.

Everything here uses anvil's own RPC methods (``anvil_setCode``, ``anvil_setStorageAt``, ``anvil_setBalance``) and
refuses any endpoint that is not an anvil on this machine (``require_local_anvil``).

``place_usdc`` deploys a ``NamedTestUSDC`` with the profile's domain (name, version), copies its runtime code to the
canonical address and its storage (owner, name and symbol strings, which live in storage) next to it, then checks
the token answers there with the profile's domain (ERC-5267 ``eip712Domain``: name, version, chain id and the
canonical address as verifying contract). ``check_authorization`` signs an EIP-3009 transfer in the domain the
profile names (not the one the token reports) and executes it at the canonical address.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from eth_account.signers.local import LocalAccount
from web3 import Web3

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient, TxResult
from proofmarket.chain.contracts import UsdcToken
from proofmarket.chain.eip3009 import TokenDomain, sign_transfer_authorization
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.profiles import ChainProfile

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
COPIED_SLOTS = 16  # NamedTestUSDC keeps its plain state (ERC20 strings, EIP712 fallbacks, owner) in the first slots
TOKEN_ARTIFACT = "NamedTestUSDC"


def require_local_anvil(client: ChainClient) -> str:
    """Refuse anything but an anvil on this machine (loopback RPC, ``web3_clientVersion`` anvil/...); return its
    version. A real chain, or another node answering on loopback, is refused before any anvil_* method is sent."""
    host = urlparse(client.rpc_url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise UsageError(f"the rehearsal only runs against a local anvil, not {client.rpc_url}", rpc_url=client.rpc_url)
    version = str(client.rpc("web3_clientVersion", []))
    if not version.lower().startswith("anvil/"):
        raise UsageError(f"the rehearsal only runs against anvil; {client.rpc_url} is {version!r}",
                         rpc_url=client.rpc_url)
    return version


@dataclass(frozen=True)
class PlacedUsdc:
    token: UsdcToken
    domain: TokenDomain  # what the token reports (ERC-5267), checked equal to the profile's
    owner: str
    template: str  # where the NamedTestUSDC whose code and storage were copied was deployed


def place_usdc(client: ChainClient, profile: ChainProfile, owner: LocalAccount) -> PlacedUsdc:
    """Put a USDC stand-in at ``profile.usdc`` with ``profile``'s EIP-712 domain, minted by ``owner``.

    The chain must answer ``profile.chain_id`` (the domain's chain id is the chain's, not stored). Idempotent: a
    placement already there with the same owner and domain is kept (balances and used nonces too)."""
    require_local_anvil(client)
    if profile.usdc is None:
        raise UsageError(f"chain {profile.name} has no canonical USDC address to place a token at")
    if client.chain_id != profile.chain_id:
        raise UsageError(f"the anvil answers chain id {client.chain_id}, the profile {profile.name} is chain id "
                         f"{profile.chain_id}: start it with --chain-id {profile.chain_id}")
    address = Web3.to_checksum_address(profile.usdc)
    artifact = load_artifact(TOKEN_ARTIFACT)
    token = UsdcToken(client, address, artifact)
    if client.code_at(address):
        placed = _read_placement(token, owner.address, "")
        if placed.domain == _expected(profile) and placed.owner == owner.address:
            return placed
        raise ChainError(f"{address} already holds other code: start the rehearsal on a fresh anvil")
    template, _ = client.deploy(artifact, owner, owner.address, profile.usdc_name, profile.usdc_version)
    client.rpc("anvil_setCode", [address, "0x" + client.code_at(template).hex()])
    for slot in range(COPIED_SLOTS):
        value = str(client.rpc("eth_getStorageAt", [template, hex(slot), "latest"]))
        if int(value, 16):
            client.rpc("anvil_setStorageAt", [address, "0x" + slot.to_bytes(32, "big").hex(),
                                              "0x" + int(value, 16).to_bytes(32, "big").hex()])
    placed = _read_placement(token, owner.address, template)
    if placed.domain != _expected(profile):
        raise ChainError(f"the token at {address} reports the EIP-712 domain {placed.domain}, "
                         f"not {profile.name}'s {_expected(profile)}")
    if placed.owner != owner.address:
        raise ChainError(f"the token at {address} is owned by {placed.owner}, not {owner.address}")
    return placed


def _expected(profile: ChainProfile) -> TokenDomain:
    assert profile.usdc is not None
    return TokenDomain(profile.usdc_name, profile.usdc_version, profile.chain_id,
                       Web3.to_checksum_address(profile.usdc))


def _read_placement(token: UsdcToken, owner: str, template: str) -> PlacedUsdc:
    _fields, name, version, chain_id, verifying, _salt, _ext = token.client.call(
        token.contract.functions.eip712Domain())
    domain = TokenDomain(str(name), str(version), int(chain_id), Web3.to_checksum_address(verifying))
    if token.name() != domain.name or token.version() != domain.version:
        raise ChainError(f"the token at {token.address} names itself {token.name()!r} v{token.version()!r} but "
                         f"signs in {domain.name!r} v{domain.version!r}")
    return PlacedUsdc(token, domain, Web3.to_checksum_address(token.owner()), template)


def fund(client: ChainClient, placed: PlacedUsdc, owner: LocalAccount, accounts: Mapping[str, str], *,
         eth_wei: int, usdc_atomic: Mapping[str, int]) -> dict[str, TxResult]:
    """Give each account ``eth_wei`` of gas money (anvil_setBalance) and mint it its ``usdc_atomic`` amount (the
    token owner's ``mint``); return the mint transactions by account name."""
    require_local_anvil(client)
    minted: dict[str, TxResult] = {}
    for name, address in accounts.items():
        client.rpc("anvil_setBalance", [Web3.to_checksum_address(address), hex(eth_wei)])
        amount = usdc_atomic.get(name, 0)
        if amount:
            minted[name] = placed.token.mint(address, amount, owner)
    return minted


@dataclass(frozen=True)
class AuthorizationCheck:
    tx: TxResult
    domain: TokenDomain
    value: int
    payer_before: int
    payer_after: int
    payee_before: int
    payee_after: int


def check_authorization(client: ChainClient, profile: ChainProfile, placed: PlacedUsdc, payer: LocalAccount,
                        payee: str, submitter: LocalAccount, value: int) -> AuthorizationCheck:
    """Sign an EIP-3009 TransferWithAuthorization in the domain ``profile`` names (chain id and canonical address
    included) and execute it at the canonical address; it must move exactly ``value`` and burn its nonce."""
    domain = _expected(profile)
    token = placed.token
    payer_before, payee_before = token.balance_of(payer.address), token.balance_of(payee)
    now = int(time.time())
    auth = sign_transfer_authorization(payer, domain, to=payee, value=value, valid_after=now - 60,
                                       valid_before=now + 600)
    tx = token.transfer_with_authorization(auth, submitter)
    payer_after, payee_after = token.balance_of(payer.address), token.balance_of(payee)
    if payer_before - payer_after != value or payee_after - payee_before != value:
        raise ChainError(f"transferWithAuthorization moved {payer_before - payer_after} from the payer and "
                         f"{payee_after - payee_before} to the payee, not {value}")
    if not token.authorization_state(payer.address, auth.nonce):
        raise ChainError("transferWithAuthorization left its nonce unused")
    return AuthorizationCheck(tx, domain, value, payer_before, payer_after, payee_before, payee_after)
