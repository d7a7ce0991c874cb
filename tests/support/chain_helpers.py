"""Shared helpers of the chain tests (fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anvil_binary import anvil_or_skip  # noqa: F401 (re-exported: this folder's tests import it from here)
from eth_account.signers.local import LocalAccount

from proofmarket.chain import (
    ChainClient,
    Deployment,
    InferenceMarket,
    ModelRegistry,
    ModelSpec,
    UsdcToken,
    model_id_of,
    model_key,
)
from proofmarket.chain.artifacts import Artifact, load_artifact_file

TEST_ARTIFACTS = Path(__file__).resolve().parents[1] / "chain" / "artifacts"  # the test contracts, compiled
USDC = 10**6
PRICE = 2_500_000  # 2.5 USDC
OWNER_SHARE_BPS = 7_000
INPUT_INSTANCES = 3




@dataclass
class Accounts:
    admin: LocalAccount
    owner: LocalAccount
    consumer: LocalAccount
    prover: LocalAccount
    prover2: LocalAccount
    relayer: LocalAccount
    stranger: LocalAccount


@dataclass
class Chain:
    client: ChainClient
    accounts: Accounts
    deployment: Deployment
    usdc: UsdcToken
    registry: ModelRegistry
    market: InferenceMarket


@dataclass
class Listed:
    """A registered model backed by a MockVerifier. ``key`` is its on-chain id (modelIdOf(owner, keccak(name)))."""

    key: bytes
    spec: ModelSpec
    verifier: str


def mock_verifier_artifact() -> Artifact:
    return load_artifact_file(TEST_ARTIFACTS / "MockVerifier.json")


def deploy_mock_verifier(chain: Chain, mode: int = 0) -> str:
    address, _ = chain.client.deploy(mock_verifier_artifact(), chain.accounts.owner)
    if mode:
        set_verifier_mode(chain, address, mode)
    return address


def set_verifier_mode(chain: Chain, verifier: str, mode: int) -> None:
    """0: accept proofs starting with 0x01; 1: return false; 2: revert; 3: burn all gas."""
    contract = chain.client.contract(verifier, mock_verifier_artifact().abi)
    chain.client.transact(contract.functions.setMode(mode), chain.accounts.owner)


def list_model(chain: Chain, name: str = "bafy-test-model", owner: LocalAccount | None = None,
               **overrides: object) -> Listed:
    owner = owner or chain.accounts.owner
    verifier = deploy_mock_verifier(chain)
    fields: dict[str, object] = dict(
        onnx_sha256=b"\x11" * 32,
        vk_digest=b"\x22" * 32,
        settings_hash=b"\x33" * 32,
        verifier=verifier,
        price=PRICE,
        owner_share_bps=OWNER_SHARE_BPS,
        input_instances=INPUT_INSTANCES,
        instance_count=INPUT_INSTANCES + 2,  # the tests' proofs have two output instances
        metadata_cid="bafy-metadata",
    )
    fields.update(overrides)
    spec = ModelSpec(**fields)  # type: ignore[arg-type]
    chain.registry.register(model_key(name), spec, owner)
    return Listed(model_id_of(owner.address, model_key(name)), spec, spec.verifier)


def stake_prover(chain: Chain, prover: LocalAccount, amount: int | None = None, authorize: bool = True) -> None:
    if amount is None:  # the minimum plus a few claim bonds
        amount = chain.market.min_stake() + 10 * chain.market.params().claim_bond
    if authorize:
        chain.market.set_prover_authorized(prover.address, True, chain.accounts.admin)
    chain.usdc.approve(chain.market.address, amount, prover)
    chain.market.stake(amount, prover)
