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
class GasPolicy:
    """How transactions are priced and re-sent on a chain (EIP-1559).

    ``max_fee_gwei``: the cap on maxFeePerGas: a transaction that would need more is not sent (``FeeTooHigh``),
    a spike does not spend what the operator did not plan for. ``priority_fee_gwei``: the least tip offered (the
    RPC's suggestion when it is higher: a tip below the market's is not mined), within the cap.
    ``resend_after_s``: a transaction not mined this long is re-sent with the same nonce and fees raised by
    ``bump`` (nodes replace a pending transaction only for at least 10% more), never above the cap.
    """

    max_fee_gwei: float
    priority_fee_gwei: float
    resend_after_s: float = 30.0
    bump: float = 1.25
    max_resends: int = 5

    def wei(self, gwei: float) -> int:
        return int(round(gwei * 10**9))

    @property
    def max_fee_wei(self) -> int:
        return self.wei(self.max_fee_gwei)

    @property
    def priority_fee_wei(self) -> int:
        return self.wei(self.priority_fee_gwei)


@dataclass(frozen=True)
class ContractDefaults:
    """Delays and windows a deployment on this chain gets (seconds): short on the devnet so tests and the demo
    move, production values elsewhere (a parameter change is announced ``params_delay_s`` before it applies)."""

    market_params_delay_s: int  # InferenceMarket.paramsDelay (immutable)
    court_params_delay_s: int  # AttestationCourt.paramsDelay (immutable)
    court_windows_s: tuple[int, int, int, int]  # challenge window, vote window, response window, unbond delay
    # quorum, sample, slash, challenger reward, voter slash, platform fee (bps); challenge bond, node minimum stake,
    # validator minimum stake (atomic USDC). See contracts/AttestationCourt.sol and bench/economics.md.
    court_shares: tuple[int, int, int, int, int, int, int, int, int]


_USDC = 10**6
DEV_CONTRACTS = ContractDefaults(0, 60, (120, 120, 120, 300),
                                 (5_000, 1_000, 5_000, 5_000, 2_000, 100, 2 * _USDC, 100 * _USDC, 10 * _USDC))
PRODUCTION_CONTRACTS = ContractDefaults(2 * 86_400, 2 * 86_400, (86_400, 86_400, 21_600, 7 * 86_400),
                                        (5_000, 1_000, 5_000, 5_000, 2_000, 100, 20 * _USDC, 1_000 * _USDC,
                                         100 * _USDC))


@dataclass(frozen=True)
class ChainProfile:
    name: str
    chain_id: int
    usdc: str | None  # the USDC token; None = the market deployment's (the devnet deploys TestUSDC)
    usdc_name: str  # EIP-712 domain name of the token (EIP-3009 authorizations are signed in it)
    usdc_version: str  # EIP-712 domain version
    confirmations: int  # blocks on top of an event's (or a settlement's) block before the node counts it
    log_range: int  # blocks per eth_getLogs request
    dev_keys_allowed: bool  # anvil's public dev keys (and plain keys in the environment) may sign here
    dev_srs_allowed: bool  # models on a dev SRS (forgeable proofs) are served and accepted here
    is_devnet: bool  # the local anvil devnet of 'proofmarket chain up'
    gas: GasPolicy = GasPolicy(max_fee_gwei=5.0, priority_fee_gwei=0.01)
    contracts: ContractDefaults = PRODUCTION_CONTRACTS
    block_time_s: float = 2.0  # typical time between blocks (waits and re-sends are sized on it)
    #: the most gas one transaction may carry: EIP-7825's cap (2**24, Ethereum's since its Fusaka upgrade); a call
    #: whose verification needs more is settled in a sequence of transactions (a sliced model's: SlicedVerifier.record)
    max_tx_gas: int = 2**24
    explorer: str | None = None  # block explorer base URL (for links in output and docs)
    #: the ERC-8004 reference registries deployed on this chain (identity, reputation), as published by the
    #: standard's authors (github.com/erc-8004/erc-8004-contracts, docs.base.org/ai-agents/reference/contracts);
    #: ``proofmarket discover --registries reference`` reads them instead of the market deployment's own
    erc8004: tuple[str, str] | None = None

    @property
    def network(self) -> str:
        """The CAIP-2 network id, as x402 names it (``eip155:<chain id>``)."""
        return f"{CAIP2_EVM}:{self.chain_id}"

    @property
    def test_usdc_allowed(self) -> bool:
        """Whether a deployment may mint its own TestUSDC (only where no real USDC exists: the devnet)."""
        return self.usdc is None and self.dev_keys_allowed

    def describe(self) -> str:
        """One line for commands and the node to print: which chain, which USDC, how many confirmations."""
        usdc = f"USDC {self.usdc} ({self.usdc_name!r} v{self.usdc_version})" if self.usdc \
            else "the deployment's test USDC"
        return (f"chain {self.name} (id {self.chain_id}, {self.network}), {usdc}, "
                f"{self.confirmations} confirmation{'s' if self.confirmations != 1 else ''}")


# Confirmations: the devnet mines on demand (0); testnets 3 (a seed's ask); mainnets by their finality as a node
# sees it: Base (2 s blocks) 10 blocks, about 20 s; Arbitrum (0.25 s blocks) 40 blocks, about 10 s. Deeper
# reorgs than these on an L2 mean its sequencer misbehaved: the L1 batch is the hard finality.
DEVNET = ChainProfile("devnet", 31337, None, "USD Coin", "2", confirmations=0, log_range=100_000,
                      dev_keys_allowed=True, dev_srs_allowed=True, is_devnet=True,
                      gas=GasPolicy(max_fee_gwei=100.0, priority_fee_gwei=1.0, resend_after_s=10.0),
                      contracts=DEV_CONTRACTS, block_time_s=1.0)
BASE_SEPOLIA = ChainProfile("base-sepolia", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2",
                            confirmations=3, log_range=2_000, dev_keys_allowed=False, dev_srs_allowed=False,
                            is_devnet=False, gas=GasPolicy(max_fee_gwei=10.0, priority_fee_gwei=0.01),
                            explorer="https://sepolia.basescan.org",
                            erc8004=("0x8004A818BFB912233c491871b3d84c89A494BD9e",
                                     "0x8004B663056A597Dffe9eCcC1965A193B7388713"))
BASE = ChainProfile("base", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2",
                    confirmations=10, log_range=2_000, dev_keys_allowed=False, dev_srs_allowed=False,
                    is_devnet=False, gas=GasPolicy(max_fee_gwei=2.0, priority_fee_gwei=0.005),
                    explorer="https://basescan.org",
                    erc8004=("0x8004A169FB4a3325136EB29fA0ceB6D2e539a432",
                             "0x8004BAa17C55a88189AE136b182e5fdA19dE9b63"))
ARBITRUM_SEPOLIA = ChainProfile("arbitrum-sepolia", 421614, "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d",
                                "USD Coin", "2", confirmations=3, log_range=2_000, dev_keys_allowed=False,
                                dev_srs_allowed=False, is_devnet=False,
                                gas=GasPolicy(max_fee_gwei=10.0, priority_fee_gwei=0.0),
                                block_time_s=0.25, explorer="https://sepolia.arbiscan.io")
ARBITRUM = ChainProfile("arbitrum", 42161, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin", "2",
                        confirmations=40, log_range=2_000, dev_keys_allowed=False, dev_srs_allowed=False,
                        is_devnet=False, gas=GasPolicy(max_fee_gwei=2.0, priority_fee_gwei=0.0),
                        block_time_s=0.25, explorer="https://arbiscan.io")

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


__all__ = ["ChainProfile", "ContractDefaults", "DEVNET", "GasPolicy", "PROFILES", "profile_for", "profile_for_network",
           "profile_named"]


def network_id(chain_id: int) -> str:
    """CAIP-2 id of an EVM chain: ``eip155:<chainId>``."""
    return f"{CAIP2_EVM}:{chain_id}"


def chain_id_of(network: str) -> int:
    """The chain id of an EVM CAIP-2 network id (``eip155:<chainId>``); ValueError for anything else."""
    prefix, _, ref = network.partition(":")
    if prefix != CAIP2_EVM or not ref.isdigit():
        raise ValueError(f"{network!r} is not an EVM CAIP-2 network id (eip155:<chainId>)")
    return int(ref)
