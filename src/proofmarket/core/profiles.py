"""What the node knows about a chain: one ``ChainProfile`` per chain id, the one place that knows "devnet".

Code asks the profile (``profile.dev_keys_allowed``, ``profile.dev_srs_allowed``, ``profile.is_devnet``,
``profile.confirmations``, ``profile.log_range``) instead of comparing chain ids. A chain id with no profile
gets a conservative one: no dev keys, no dev SRS, 3 confirmations, small log ranges.

USDC addresses and EIP-712 domains agree with the x402 SDK's default assets (a test checks it); the devnet's
USDC is the TestUSDC its deployment makes (``usdc`` None: read it from the deployment).
"""

from __future__ import annotations

from dataclasses import dataclass

from proofmarket.core.errors import UsageError

CAIP2_EVM = "eip155"


@dataclass(frozen=True)
class ChainProfile:
    name: str
    chain_id: int
    usdc: str | None  # the USDC token; None = the market deployment's (the devnet deploys TestUSDC)
    usdc_name: str  # EIP-712 domain name of the token (EIP-3009 authorizations are signed in it)
    usdc_version: str  # EIP-712 domain version
    confirmations: int  # blocks on top of an event's block before the node acts on it
    log_range: int  # blocks per eth_getLogs request
    dev_keys_allowed: bool  # anvil's public dev keys may sign here
    dev_srs_allowed: bool  # models on a dev SRS (forgeable proofs) are served and accepted here
    is_devnet: bool  # the local anvil devnet of 'proofmarket chain up'

    @property
    def network(self) -> str:
        """The CAIP-2 network id, as x402 names it (``eip155:<chain id>``)."""
        return f"{CAIP2_EVM}:{self.chain_id}"


DEVNET = ChainProfile("devnet", 31337, None, "USD Coin", "2", confirmations=1, log_range=100_000,
                      dev_keys_allowed=True, dev_srs_allowed=True, is_devnet=True)
BASE_SEPOLIA = ChainProfile("base-sepolia", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2",
                            confirmations=3, log_range=2_000, dev_keys_allowed=False, dev_srs_allowed=False,
                            is_devnet=False)
BASE = ChainProfile("base", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2",
                    confirmations=6, log_range=2_000, dev_keys_allowed=False, dev_srs_allowed=False,
                    is_devnet=False)
ARBITRUM_SEPOLIA = ChainProfile("arbitrum-sepolia", 421614, "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d",
                                "USD Coin", "2", confirmations=3, log_range=2_000, dev_keys_allowed=False,
                                dev_srs_allowed=False, is_devnet=False)
ARBITRUM = ChainProfile("arbitrum", 42161, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin", "2",
                        confirmations=6, log_range=2_000, dev_keys_allowed=False, dev_srs_allowed=False,
                        is_devnet=False)

PROFILES: dict[str, ChainProfile] = {p.name: p for p in (DEVNET, BASE_SEPOLIA, BASE, ARBITRUM_SEPOLIA, ARBITRUM)}
_BY_CHAIN_ID: dict[int, ChainProfile] = {p.chain_id: p for p in PROFILES.values()}


def profile_for(chain_id: int) -> ChainProfile:
    """The profile of ``chain_id``; a chain without one gets the conservative profile."""
    known = _BY_CHAIN_ID.get(chain_id)
    if known is not None:
        return known
    return ChainProfile(f"chain-{chain_id}", chain_id, None, "USD Coin", "2", confirmations=3, log_range=1_000,
                        dev_keys_allowed=False, dev_srs_allowed=False, is_devnet=False)


def profile_named(name: str) -> ChainProfile:
    """The profile called ``name`` (PROOFMARKET_CHAIN); an unknown name is a usage error."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise UsageError(f"unknown chain {name!r}: one of {', '.join(PROFILES)}", chain=name) from None


def profile_for_network(network: str) -> ChainProfile | None:
    """The profile of a CAIP-2 network id (``eip155:<chain id>``); None when it is not an EVM chain id."""
    namespace, _, reference = network.partition(":")
    if namespace != CAIP2_EVM or not reference.isdigit():
        return None
    return profile_for(int(reference))


__all__ = ["ChainProfile", "DEVNET", "PROFILES", "profile_for", "profile_for_network", "profile_named"]


def network_id(chain_id: int) -> str:
    """CAIP-2 id of an EVM chain: ``eip155:<chainId>``."""
    return f"{CAIP2_EVM}:{chain_id}"


def chain_id_of(network: str) -> int:
    """The chain id of an EVM CAIP-2 network id (``eip155:<chainId>``); ValueError for anything else."""
    prefix, _, ref = network.partition(":")
    if prefix != CAIP2_EVM or not ref.isdigit():
        raise ValueError(f"{network!r} is not an EVM CAIP-2 network id (eip155:<chainId>)")
    return int(ref)
