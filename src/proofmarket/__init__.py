"""proofmarket: verifiable ML inference. ONNX models, paid calls, zero-knowledge proofs.

The public surface: a local :class:`Workspace` (compile, prove, verify), the proof bundle format and
its verifier, the privacy profiles, the error tree, and the node SDK :class:`Client`. The heavy parts
(the SDK's HTTP and web3 stack, EZKL, onnxruntime) load on first use, so a one-shot command starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from proofmarket.errors import (
    ArtifactNotFound,
    BundleError,
    ChainError,
    InputError,
    ModelError,
    PaymentError,
    ProofMarketError,
    ProvingError,
    UnsupportedOperator,
    VerificationFailed,
)

if TYPE_CHECKING:
    from proofmarket.client import Client, InferenceResult
    from proofmarket.workspace import Workspace
    from proofmarket.zk.bundle import ProofBundle
    from proofmarket.zk.profile import PrivacyProfile
    from proofmarket.zk.verify import VerifyReport, verify_bundle

__version__ = "0.1.0"

_LAZY = {
    "Client": "proofmarket.client",
    "InferenceResult": "proofmarket.client",
    "Workspace": "proofmarket.workspace",
    "ProofBundle": "proofmarket.zk.bundle",
    "PrivacyProfile": "proofmarket.zk.profile",
    "VerifyReport": "proofmarket.zk.verify",
    "verify_bundle": "proofmarket.zk.verify",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'proofmarket' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ArtifactNotFound",
    "BundleError",
    "ChainError",
    "Client",
    "InferenceResult",
    "InputError",
    "ModelError",
    "PaymentError",
    "PrivacyProfile",
    "ProofBundle",
    "ProofMarketError",
    "ProvingError",
    "UnsupportedOperator",
    "VerificationFailed",
    "VerifyReport",
    "Workspace",
    "__version__",
    "verify_bundle",
]
