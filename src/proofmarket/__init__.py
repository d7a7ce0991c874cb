"""proofmarket: verifiable ML inference. ONNX models, paid calls, zero-knowledge proofs.

The public surface: a local :class:`Workspace` (compile, prove, verify), the proof bundle format and
its verifier, the privacy profiles, the error tree, and the node SDK :class:`Client`. The heavy parts
(the SDK's HTTP and web3 stack, EZKL, onnxruntime) load on first use, so a one-shot command starts fast.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from proofmarket.core.errors import (
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
from proofmarket.core.lazy import lazy_names

if TYPE_CHECKING:
    from proofmarket.sdk.client import Client, InferenceResult
    from proofmarket.sdk.discovery import discover
    from proofmarket.systems.ezkl.bundle import ProofBundle
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.ezkl.verify import verify_bundle
    from proofmarket.systems.port import VerifyReport
    from proofmarket.systems.workspace import Workspace

__version__ = "0.1.0"

RECURSION_LIMIT = 1000  # Python's default


class _KeepRecursionLimit:
    """``py_ecc`` (imported by ``eth_account`` through ``eth_keyfile``) raises the recursion limit to 100000 when
    it loads: deeply nested input (JSON, a pickle) then overflows the C stack and kills the process instead of
    raising RecursionError. This finder (a meta path finder: ``find_spec`` is all the import system asks of one; not
    a subclass of ``importlib.abc.MetaPathFinder``, whose import loads ``importlib.resources`` into every command)
    lets ``py_ecc`` load as usual and puts the limit back after it."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "py_ecc":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_keeping_limit(module: ModuleType) -> None:
            limit = sys.getrecursionlimit()
            try:
                exec_module(module)
            finally:
                sys.setrecursionlimit(limit)

        loader.exec_module = exec_keeping_limit
        return spec


if "py_ecc" in sys.modules:  # loaded before proofmarket: only the limit is left to fix
    sys.setrecursionlimit(min(sys.getrecursionlimit(), RECURSION_LIMIT))
elif not any(isinstance(f, _KeepRecursionLimit) for f in sys.meta_path):
    sys.meta_path.insert(0, _KeepRecursionLimit())

_LAZY = {
    "Client": "proofmarket.sdk.client",
    "discover": "proofmarket.sdk.discovery",
    "InferenceResult": "proofmarket.sdk.client",
    "Workspace": "proofmarket.systems.workspace",
    "ProofBundle": "proofmarket.systems.ezkl.bundle",
    "PrivacyProfile": "proofmarket.systems.ezkl.profile",
    "VerifyReport": "proofmarket.systems.ezkl.verify",
    "verify_bundle": "proofmarket.systems.ezkl.verify",
}

__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [
    "ArtifactNotFound",
    "BundleError",
    "ChainError",
    "Client",
    "InferenceResult",
    "discover",
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
