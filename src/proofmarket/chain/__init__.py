"""On-chain market: contract artifacts, web3 client, anvil devnet, deployer, wrappers, event watcher."""

from proofmarket.chain.artifacts import Artifact, load_artifact, load_artifact_file
from proofmarket.chain.client import ChainClient, TxResult
from proofmarket.chain.commitments import (
    authorization_nonce,
    input_commitment,
    instances_hash,
    model_id_for,
    model_id_of,
    model_key,
)
from proofmarket.chain.contracts import ModelRegistry, UsdcToken
from proofmarket.chain.deploy import Deployment, MarketConfig, deploy, load_deployment
from proofmarket.chain.devkeys import ANVIL_DEV_KEYS, dev_account
from proofmarket.chain.devnet import Devnet, advance_time, find_anvil, mine
from proofmarket.chain.eip3009 import (
    SignedAuthorization,
    TokenDomain,
    sign_cancel_authorization,
    sign_transfer_authorization,
)
from proofmarket.chain.market import InferenceMarket
from proofmarket.chain.types import (
    Fulfilment,
    InferenceRequest,
    MarketParams,
    ModelSpec,
    Payout,
    ProofMode,
    ProverInfo,
    RegisteredModel,
    RequestStatus,
    RequestSubmitted,
    SplitRelease,
)
from proofmarket.chain.watcher import ChainEvent, EventWatcher

__all__ = [
    "ANVIL_DEV_KEYS",
    "Artifact",
    "ChainClient",
    "ChainEvent",
    "Deployment",
    "Devnet",
    "EventWatcher",
    "InferenceMarket",
    "InferenceRequest",
    "MarketConfig",
    "ModelRegistry",
    "ModelSpec",
    "ProofMode",
    "ProverInfo",
    "RegisteredModel",
    "RequestStatus",
    "RequestSubmitted",
    "Fulfilment",
    "SignedAuthorization",
    "TokenDomain",
    "TxResult",
    "UsdcToken",
    "advance_time",
    "authorization_nonce",
    "deploy",
    "dev_account",
    "find_anvil",
    "input_commitment",
    "instances_hash",
    "load_artifact",
    "load_artifact_file",
    "load_deployment",
    "mine",
    "model_key",
    "model_id_for",
    "model_id_of",
    "MarketParams",
    "Payout",
    "SplitRelease",
    "sign_cancel_authorization",
    "sign_transfer_authorization",
]
