"""proofmarket: verifiable ML inference. ONNX models, paid calls, zero-knowledge proofs."""

from proofmarket.errors import ProofMarketError

__version__ = "0.1.0"

__all__ = ["ProofMarketError", "__version__"]
