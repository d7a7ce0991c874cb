"""Idempotent deployment of the market contracts, recorded in a deployment JSON file.

``deploy(client, deployer, path)`` deploys TestUSDC (where the chain profile allows it, unless a token address is
given), ModelRegistry, InferenceMarket, the ERC-8004 registries, the AttestationCourt and its validator (the list
and order: ``proofmarket.chain.deploy_plan``), mints test USDC, and writes
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
from proofmarket.chain.deploy_plan import (
    COURT,
    COURT_CONTRACTS,
    COURT_PARAMS,
    DEVNET_COURT_PARAMS,
    ERC8004_CONTRACTS,
    SHARED,
    USDC_UNIT,
    Creation,
    MarketConfig,
    court_creations,
    creations,
    erc8004_creations,
    shared_creations,
)
from proofmarket.chain.devkeys import ANVIL_DEV_KEYS
from proofmarket.chain.market import InferenceMarket
from proofmarket.core.errors import ChainError, UsageError
from proofmarket.core.profiles import ChainProfile

__all__ = ["COURT", "COURT_CONTRACTS", "COURT_PARAMS", "DEVNET_COURT_PARAMS", "ERC8004_CONTRACTS", "FORMAT",
           "USDC_UNIT", "Deployed", "Deployment", "MarketConfig", "court_source_hash", "deploy", "is_live",
           "load_deployment", "market_source_hash"]

FORMAT = "proofmarket/deployment"


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
    def shared_verifier(self) -> str | None:
        """The SharedVerifier (listings on EZKL's reusable verifier), when the deployment has one."""
        return self.contracts[SHARED].address if SHARED in self.contracts else None

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
    profile: ChainProfile | None = None,
) -> Deployment:
    """Deploy unless ``path`` already holds a live deployment; return the deployment either way.

    ``usdc=None`` deploys TestUSDC (only where ``profile.test_usdc_allowed``) and mints ``mint_amount`` to
    ``mint_to`` (default: the ten anvil dev accounts). Pass a token address to use an existing USDC instead.
    ``profile`` (default: the profile of the client's chain) gives the delays and windows.
    """
    profile = profile or client.profile
    existing = load_deployment(path)
    if existing is not None and is_live(client, existing):
        recorded = {k: v.address for k, v in existing.contracts.items()}
        added: dict[str, Deployed] = {}
        if existing.erc8004 is None:  # a deployment from before the ERC-8004 registries: add them in place
            added.update(_create(client, deployer, erc8004_creations(), recorded))
        if existing.court_source_hash != court_source_hash() or existing.court_validator is None:
            # ... or from before the AttestationCourt (or with a court of older code)
            added.update(_create(client, deployer, court_creations(profile, deployer.address), recorded))
        if existing.shared_verifier is None:  # ... or from before shared verifiers
            added.update(_create(client, deployer, shared_creations(), recorded))
        if added:
            existing = replace(existing, contracts={**existing.contracts, **added},
                               court_source_hash=court_source_hash())
            _write(path, existing)
        return existing
    config = config or MarketConfig()
    contracts: dict[str, Deployed] = {}
    known: dict[str, str] = {}
    if usdc is None:
        if not profile.test_usdc_allowed:
            raise UsageError(f"chain {profile.name} has no TestUSDC (its profile does not allow one): give the "
                             "USDC token address to use", chain=profile.name)
    else:
        contracts["USDC"] = Deployed(client.w3.to_checksum_address(usdc), 0)
        known["USDC"] = contracts["USDC"].address
    contracts.update(_create(client, deployer, creations(profile, deployer.address, config, test_usdc=usdc is None),
                             known))
    if usdc is None:
        _mint(client, contracts["USDC"].address, deployer, mint_to, mint_amount)
    deployment = Deployment(client.chain_id, deployer.address, contracts, usdc is None, config,
                            market_source_hash(), court_source_hash())
    _write(path, deployment)
    return deployment


def _create(client: ChainClient, deployer: LocalAccount, plan: Sequence[Creation],
            known: dict[str, str]) -> dict[str, Deployed]:
    """Send the plan's creations in order; ``known`` (addresses by name) grows with each one."""
    out = {}
    for creation in plan:
        address, tx = client.deploy(creation.code(known), deployer, *creation.resolved(known))
        known[creation.key] = address
        out[creation.key] = Deployed(address, tx.block_number)
    return out


def court_source_hash() -> str:
    return load_artifact(COURT).source_hash


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
