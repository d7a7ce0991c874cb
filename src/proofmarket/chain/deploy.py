"""Idempotent deployment of the market contracts, recorded in a deployment JSON file.

``deploy(client, deployer, path)`` deploys TestUSDC (devnet only, unless an existing token address is
given), ModelRegistry and InferenceMarket, mints test USDC, and writes
``{"chainId", "deployer", "contracts": {name: {"address", "block"}}, ...}`` to ``path``. When ``path``
already describes this chain and every contract has code there, nothing is sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.client import ChainClient
from proofmarket.chain.contracts import ModelRegistry, UsdcToken
from proofmarket.chain.devkeys import ANVIL_DEV_KEYS, require_devnet
from proofmarket.chain.market import InferenceMarket
from proofmarket.core.errors import ChainError
from proofmarket.core.profiles import profile_for

USDC_UNIT = 10**6
FORMAT = "proofmarket/deployment"
ERC8004_CONTRACTS = ("IdentityRegistry", "ReputationRegistry", "ValidationRegistry", "ZkValidator")
COURT = "AttestationCourt"
COURT_CONTRACTS = (COURT, "CourtValidator")
# window, vote window, response window, unbond delay (s); quorum, sample, slash, challenger reward, voter slash,
# platform fee (bps); challenge bond, node minimum stake, validator minimum stake (atomic USDC). See
# contracts/AttestationCourt.sol and bench/economics.md for what they buy.
DEVNET_COURT_PARAMS = (120, 120, 120, 300, 5_000, 1_000, 5_000, 5_000, 2_000, 100,
                       2 * USDC_UNIT, 100 * USDC_UNIT, 10 * USDC_UNIT)
COURT_PARAMS = (86_400, 86_400, 21_600, 7 * 86_400, 5_000, 1_000, 5_000, 5_000, 2_000, 100,
                20 * USDC_UNIT, 1_000 * USDC_UNIT, 100 * USDC_UNIT)
# how long a scheduled court parameter change waits (AttestationCourt.paramsDelay, immutable)
DEVNET_COURT_PARAMS_DELAY = 60
COURT_PARAMS_DELAY = 2 * 24 * 3600


@dataclass(frozen=True)
class MarketConfig:
    """The market's initial parameters (bounded on chain) and its parameter-change delay.

    ``params_delay``: how long a scheduled change waits (InferenceMarket.paramsDelay, immutable). ``None``
    picks the default: 0 on the devnet (tests change parameters at once), 2 days elsewhere.
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


DEVNET_PARAMS_DELAY = 0
DEFAULT_PARAMS_DELAY = 2 * 24 * 3600


def market_source_hash() -> str:
    """The compiled market's source hash: a deployment recorded for other contract code is not reused."""
    return load_artifact("InferenceMarket").source_hash


@dataclass(frozen=True)
class Deployed:
    address: str
    block: int


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    deployer: str
    contracts: dict[str, Deployed]
    test_usdc: bool
    config: MarketConfig = field(default_factory=MarketConfig)
    source_hash: str = ""
    court_source_hash: str = ""  # the AttestationCourt's: a court of older code is replaced

    @property
    def usdc(self) -> str:
        return self.contracts["USDC"].address

    @property
    def registry(self) -> str:
        return self.contracts["ModelRegistry"].address

    @property
    def market(self) -> str:
        return self.contracts["InferenceMarket"].address

    @property
    def court(self) -> str | None:
        """The AttestationCourt (challenge window for attested results), when the deployment has one."""
        return self.contracts[COURT].address if COURT in self.contracts else None

    @property
    def court_validator(self) -> str | None:
        """The ERC-8004 validator that answers from the court's verdicts, when the deployment has one."""
        return self.contracts["CourtValidator"].address if "CourtValidator" in self.contracts else None

    @property
    def erc8004(self) -> dict[str, str] | None:
        """The ERC-8004 registries (identity, reputation, validation), when the deployment has them."""
        if not all(name in self.contracts for name in ERC8004_CONTRACTS):
            return None
        return {name: self.contracts[name].address for name in ERC8004_CONTRACTS}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "chainId": self.chain_id,
            "deployer": self.deployer,
            "testUsdc": self.test_usdc,
            "contracts": {k: asdict(v) for k, v in self.contracts.items()},
            "config": asdict(self.config),
            "sourceHash": self.source_hash,
            "courtSourceHash": self.court_source_hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        contracts = {k: Deployed(v["address"], int(v["block"])) for k, v in data["contracts"].items()}
        return cls(
            int(data["chainId"]),
            data["deployer"],
            contracts,
            bool(data["testUsdc"]),
            MarketConfig(**data.get("config", {})),
            str(data.get("sourceHash", "")),
            str(data.get("courtSourceHash", "")),
        )

    def bind(self, client: ChainClient) -> tuple[UsdcToken, ModelRegistry, InferenceMarket]:
        return (
            UsdcToken(client, self.usdc),
            ModelRegistry(client, self.registry),
            InferenceMarket(client, self.market),
        )


def load_deployment(path: Path) -> Deployment | None:
    if not Path(path).exists():
        return None
    try:
        return Deployment.from_json(json.loads(Path(path).read_text()))
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainError(f"deployment file {path} is not valid: {exc}", path=str(path)) from exc


def is_live(client: ChainClient, deployment: Deployment) -> bool:
    """True when the deployment is for this chain and all its contracts have code."""
    if deployment.chain_id != client.chain_id or deployment.source_hash != market_source_hash():
        return False
    return all(client.code_at(c.address) for c in deployment.contracts.values())


def deploy(
    client: ChainClient,
    deployer: LocalAccount,
    path: Path,
    *,
    usdc: str | None = None,
    config: MarketConfig | None = None,
    mint_to: Sequence[str] | None = None,
    mint_amount: int = 100_000 * USDC_UNIT,
) -> Deployment:
    """Deploy unless ``path`` already holds a live deployment; return the deployment either way.

    ``usdc=None`` deploys TestUSDC (devnet only) and mints ``mint_amount`` to ``mint_to`` (default:
    the ten anvil dev accounts). Pass a token address to use an existing USDC instead.
    """
    existing = load_deployment(path)
    if existing is not None and is_live(client, existing):
        added: dict[str, Deployed] = {}
        if existing.erc8004 is None:  # a deployment from before the ERC-8004 registries: add them in place
            added.update(_deploy_erc8004(client, deployer, existing.registry, existing.market))
        if existing.court_source_hash != court_source_hash() or existing.court_validator is None:
            # ... or from before the AttestationCourt (or with a court of older code)
            known = existing.erc8004 or {k: v.address for k, v in added.items()}
            added.update(_deploy_court(client, deployer, existing.usdc, existing.registry, known))
        if added:
            existing = replace(existing, contracts={**existing.contracts, **added},
                               court_source_hash=court_source_hash())
            _write(path, existing)
        return existing
    config = config or MarketConfig()
    delay = config.params_delay
    if delay is None:
        delay = DEVNET_PARAMS_DELAY if profile_for(client.chain_id).is_devnet else DEFAULT_PARAMS_DELAY
    contracts: dict[str, Deployed] = {}
    if usdc is None:
        require_devnet(client.chain_id, "TestUSDC")
        usdc_address, tx = client.deploy(load_artifact("TestUSDC"), deployer, deployer.address)
        contracts["USDC"] = Deployed(usdc_address, tx.block_number)
        _mint(client, usdc_address, deployer, mint_to, mint_amount)
    else:
        contracts["USDC"] = Deployed(client.w3.to_checksum_address(usdc), 0)
    registry, tx = client.deploy(load_artifact("ModelRegistry"), deployer)
    contracts["ModelRegistry"] = Deployed(registry, tx.block_number)
    market, tx = client.deploy(
        load_artifact("InferenceMarket"),
        deployer,
        contracts["USDC"].address,
        registry,
        deployer.address,
        config.params(),
        delay,
    )
    contracts["InferenceMarket"] = Deployed(market, tx.block_number)
    registries = _deploy_erc8004(client, deployer, registry, market)
    contracts.update(registries)
    contracts.update(_deploy_court(client, deployer, contracts["USDC"].address, registry,
                                   {k: v.address for k, v in registries.items()}))
    deployment = Deployment(client.chain_id, deployer.address, contracts, usdc is None, config,
                            market_source_hash(), court_source_hash())
    _write(path, deployment)
    return deployment


def _deploy_erc8004(client: ChainClient, deployer: LocalAccount, registry: str, market: str) -> dict[str, Deployed]:
    """The ERC-8004 Trustless Agents registries (identity, then reputation and validation bound to it) and the
    ZkValidator that answers validations of proven work from chain state."""
    identity, tx = client.deploy(load_artifact("IdentityRegistry"), deployer)
    out = {"IdentityRegistry": Deployed(identity, tx.block_number)}
    for name in ("ReputationRegistry", "ValidationRegistry"):
        address, tx = client.deploy(load_artifact(name), deployer, identity)
        out[name] = Deployed(address, tx.block_number)
    validator, tx = client.deploy(load_artifact("ZkValidator"), deployer, out["ValidationRegistry"].address, identity,
                                  registry, market)
    out["ZkValidator"] = Deployed(validator, tx.block_number)
    return out


def court_source_hash() -> str:
    return load_artifact(COURT).source_hash


def _deploy_court(client: ChainClient, deployer: LocalAccount, usdc: str, registry: str,
                  erc8004: dict[str, str]) -> dict[str, Deployed]:
    """The AttestationCourt and the CourtValidator that answers ERC-8004 validations from its verdicts."""
    devnet = profile_for(client.chain_id).is_devnet
    params, delay = (DEVNET_COURT_PARAMS, DEVNET_COURT_PARAMS_DELAY) if devnet else (COURT_PARAMS, COURT_PARAMS_DELAY)
    address, tx = client.deploy(load_artifact(COURT), deployer, usdc, registry, deployer.address, params, delay)
    validator, vtx = client.deploy(load_artifact("CourtValidator"), deployer, erc8004["ValidationRegistry"],
                                   erc8004["IdentityRegistry"], address)
    return {COURT: Deployed(address, tx.block_number), "CourtValidator": Deployed(validator, vtx.block_number)}


def _mint(client: ChainClient, token: str, deployer: LocalAccount, to: Sequence[str] | None, amount: int) -> None:
    if to is None:
        to = [Account.from_key(key).address for key in ANVIL_DEV_KEYS]
    usdc = UsdcToken(client, token)
    for address in to:
        usdc.mint(address, amount, deployer)


def _write(path: Path, deployment: Deployment) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(deployment.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
