"""proofmarket: verifiable ML inference. ONNX models, paid calls, zero-knowledge proofs.

The public surface: a local :class:`Workspace` (compile, prove, verify), the proof bundle format and
its verifier, the privacy profiles, the error tree, and the node SDK :class:`Client`.
"""

from proofmarket.client import Client, InferenceResult
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
from proofmarket.workspace import Workspace
from proofmarket.zk.bundle import ProofBundle
from proofmarket.zk.profile import PrivacyProfile
from proofmarket.zk.verify import VerifyReport, verify_bundle

__version__ = "0.1.0"

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
