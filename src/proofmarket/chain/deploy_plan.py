"""What a market deployment sends, in order: the one list both ``deploy`` and its dry run follow.

``creations(profile, admin, config, test_usdc=...)`` lists the contract creations with their constructor
arguments; an argument that is another contract of the plan is a ``Ref`` to it, resolved against the addresses
known so far (deployed, recorded, or predicted from the deployer's nonce in a dry run). Delays and windows come
from the chain profile (``profile.contracts``); the court's shares and stakes are production values off the devnet.

``dry_run(client, deployer, plan)`` sends nothing: each creation's gas (``eth_estimateGas``), its cost at the
chain's current fee (base fee + tip, or the gas price on a chain without base fee) and its CREATE address.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import Web3RPCError

from proofmarket.chain.artifacts import Artifact, load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.court import COURT_LIBRARY
from proofmarket.core.profiles import DEV_CONTRACTS, PRODUCTION_CONTRACTS, ChainProfile

USDC_UNIT = 10**6
# the court's shares and stakes (ContractDefaults.court_shares in core/profiles.py)
DEVNET_COURT_SHARES = DEV_CONTRACTS.court_shares
COURT_SHARES = PRODUCTION_CONTRACTS.court_shares
# the court's whole initial parameters on the devnet and off it (bench/court_game.py plays both)
DEVNET_COURT_PARAMS = (*DEV_CONTRACTS.court_windows_s, *DEVNET_COURT_SHARES)
COURT_PARAMS = (*PRODUCTION_CONTRACTS.court_windows_s, *COURT_SHARES)
COURT = "AttestationCourt"
ERC8004_CONTRACTS = ("IdentityRegistry", "ReputationRegistry", "ValidationRegistry", "ZkValidator")
COURT_CONTRACTS = (COURT_LIBRARY, COURT, "CourtValidator")


@dataclass(frozen=True)
class MarketConfig:
    """The market's initial parameters (bounded on chain) and its parameter-change delay.

    ``params_delay``: how long a scheduled change waits (InferenceMarket.paramsDelay, immutable). ``None``
    picks the chain profile's (``profile.contracts.market_params_delay_s``: 0 on the devnet, 2 days elsewhere).
    """

    platform_fee_bps: int = 250
    slash_bps: int = 1_000
    min_stake: int = 100 * USDC_UNIT
    unstake_delay: int = 24 * 3600
    claim_window: int = 3600
    claim_bond: int = 1 * USDC_UNIT
    params_delay: int | None = None

    def params(self) -> tuple[int, ...]:
        return (self.platform_fee_bps, self.slash_bps, self.unstake_delay, self.claim_window, self.min_stake,
                self.claim_bond)


@dataclass(frozen=True)
class Ref:
    """The address of the plan's contract ``name``."""

    name: str


@dataclass(frozen=True)
class Creation:
    key: str  # the contract's name in the deployment ("USDC" for the devnet's TestUSDC)
    artifact: str
    args: tuple[Any, ...]

    def resolved(self, addresses: Mapping[str, str]) -> tuple[Any, ...]:
        return tuple(addresses[a.name] if isinstance(a, Ref) else a for a in self.args)

    def code(self, addresses: Mapping[str, str]) -> Artifact:
        """The artifact, linked to the libraries it calls (each a creation of the plan before it, by name)."""
        return load_artifact(self.artifact).linked(addresses)

    def summary(self, addresses: Mapping[str, str]) -> str:
        """The constructor arguments in one line (contracts by name and address)."""
        def one(arg: Any) -> str:
            if isinstance(arg, Ref):
                return f"{arg.name}={addresses.get(arg.name, '?')}"
            if isinstance(arg, tuple):
                return "(" + ", ".join(str(x) for x in arg) + ")"
            return str(arg)
        return ", ".join(one(a) for a in self.args)


def market_params_delay(config: MarketConfig, profile: ChainProfile) -> int:
    return profile.contracts.market_params_delay_s if config.params_delay is None else config.params_delay


def court_params(profile: ChainProfile) -> tuple[int, ...]:
    """The court's initial parameters: the profile's windows, then its shares and stakes (small on the devnet)."""
    return (*profile.contracts.court_windows_s, *profile.contracts.court_shares)


def creations(profile: ChainProfile, admin: str, config: MarketConfig, *, test_usdc: bool) -> list[Creation]:
    """Every creation of a fresh deployment, in order; ``admin`` owns the market, the court (and TestUSDC)."""
    out = [Creation("USDC", "TestUSDC", (admin,))] if test_usdc else []
    out += [
        Creation("ModelRegistry", "ModelRegistry", ()),
        Creation("InferenceMarket", "InferenceMarket", (Ref("USDC"), Ref("ModelRegistry"), admin, config.params(),
                                                        market_params_delay(config, profile))),
        *erc8004_creations(),
        *court_creations(profile, admin),
        *shared_creations(),
    ]
    return out


SHARED = "SharedVerifier"


def shared_creations() -> list[Creation]:
    """The SharedVerifier: listings on EZKL's reusable verifier point at its clones (contracts/SharedVerifier.sol)."""
    return [Creation(SHARED, SHARED, ())]


def erc8004_creations() -> list[Creation]:
    """The ERC-8004 registries (identity, then reputation and validation bound to it) and the ZkValidator."""
    return [
        Creation("IdentityRegistry", "IdentityRegistry", ()),
        Creation("ReputationRegistry", "ReputationRegistry", (Ref("IdentityRegistry"),)),
        Creation("ValidationRegistry", "ValidationRegistry", (Ref("IdentityRegistry"),)),
        Creation("ZkValidator", "ZkValidator", (Ref("ValidationRegistry"), Ref("IdentityRegistry"),
                                                Ref("ModelRegistry"), Ref("InferenceMarket"))),
    ]


def court_creations(profile: ChainProfile, admin: str) -> list[Creation]:
    """The AttestationCourt (after the library it links) and the CourtValidator that answers ERC-8004 validations
    from its verdicts."""
    return [
        Creation(COURT_LIBRARY, COURT_LIBRARY, ()),
        Creation(COURT, COURT, (Ref("USDC"), Ref("ModelRegistry"), admin, court_params(profile),
                                profile.contracts.court_params_delay_s)),
        Creation("CourtValidator", "CourtValidator", (Ref("ValidationRegistry"), Ref("IdentityRegistry"), Ref(COURT))),
    ]


def create_address(sender: str, nonce: int) -> str:
    """The address a CREATE from ``sender`` at ``nonce`` gets: keccak256(rlp([sender, nonce]))[12:]."""
    return Web3.to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender.removeprefix("0x")), nonce]))[12:])


@dataclass(frozen=True)
class PlannedTx:
    contract: str
    action: str  # "create" or a call ("mint")
    args: str
    nonce: int
    address: str  # the created contract (or the contract called)
    gas: int | None  # eth_estimateGas; None when it cannot be estimated before the creations above are mined

    def cost_wei(self, price_wei: int) -> int | None:
        return None if self.gas is None else self.gas * price_wei

    def to_json(self, price_wei: int) -> dict[str, Any]:
        return {"contract": self.contract, "action": self.action, "args": self.args, "nonce": self.nonce,
                "address": self.address, "gas": self.gas, "costWei": self.cost_wei(price_wei)}


@dataclass(frozen=True)
class DryRun:
    chain_id: int
    profile: str
    deployer: str
    price_wei: int  # per gas: base fee + tip (or the gas price)
    fee_note: str  # how the price was found, and whether it is above the profile's cap
    txs: Sequence[PlannedTx]

    @property
    def total_gas(self) -> int:
        return sum(t.gas or 0 for t in self.txs)

    @property
    def total_cost_wei(self) -> int:
        return self.total_gas * self.price_wei

    def to_json(self) -> dict[str, Any]:
        return {"chainId": self.chain_id, "profile": self.profile, "deployer": self.deployer, "dryRun": True,
                "priceWei": self.price_wei, "fee": self.fee_note, "totalGas": self.total_gas,
                "totalCostWei": self.total_cost_wei, "transactions": [t.to_json(self.price_wei) for t in self.txs]}


def current_price(client: ChainClient) -> tuple[int, str]:
    """The fee a transaction pays now, per gas (wei), and a note saying how it was found."""
    w3, policy = client.w3, client.gas
    with client.translate("read the fee"):
        base = w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            price = int(w3.eth.gas_price)
            return price, f"gas price {price / 1e9:.4f} gwei (eth_gasPrice)"
        tip = policy.priority_fee_wei
        with contextlib.suppress(Web3RPCError, ValueError):
            tip = max(tip, int(w3.eth.max_priority_fee))
    price = int(base) + tip
    note = f"base fee {int(base) / 1e9:.4f} gwei + tip {tip / 1e9:.4f} gwei"
    if price > policy.max_fee_wei:
        note += f" (above the profile's cap of {policy.max_fee_gwei} gwei: deploy would refuse to send)"
    return price, note


def dry_run(client: ChainClient, deployer: str, plan: Sequence[Creation], known: Mapping[str, str],
            mints: Sequence[tuple[str, int]] = ()) -> DryRun:
    """Estimate ``plan`` from ``deployer`` (nothing is sent); ``known``: addresses of contracts not in the plan
    (the USDC, or a recorded deployment's); ``mints``: TestUSDC mints (address, amount) after the creations."""
    with client.translate("read the deployer's nonce"):
        nonce = int(client.w3.eth.get_transaction_count(Web3.to_checksum_address(deployer), "pending"))
    addresses = dict(known)
    txs = []
    for creation in plan:
        address = create_address(deployer, nonce)
        addresses[creation.key] = address
        artifact = creation.code(addresses)
        factory = client.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        with client.translate(f"estimate the creation of {creation.artifact}"):
            gas = int(factory.constructor(*creation.resolved(addresses)).estimate_gas({"from": deployer}))
        txs.append(PlannedTx(creation.artifact, "create", creation.summary(addresses), nonce, address, gas))
        nonce += 1
    token = addresses.get("USDC", "")
    for to, amount in mints:  # the token does not exist before the plan is mined: listed, not estimated
        txs.append(PlannedTx("TestUSDC", "mint", f"{to}, {amount}", nonce, token, None))
        nonce += 1
    price, note = current_price(client)
    return DryRun(client.chain_id, client.profile.name, Web3.to_checksum_address(deployer), price, note, txs)
