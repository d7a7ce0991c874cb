"""Proof systems behind a model: one port (``port.py``), a registry (``registry.py``), the built-in systems.

Manifests and bundles name their system (the envelope, see ``port.py``); everything that holds one asks the
registry, which is the only place that tells systems apart. v1 documents (before attested mode) are EZKL ones and
still load and verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofmarket.core.lazy import lazy_names

if TYPE_CHECKING:
    from proofmarket.store import ArtifactStore
    from proofmarket.systems.port import Execution, ProofSystem, SystemContext, SystemSpec, VerifyReport
    from proofmarket.systems.registry import (
        ATTESTED_SYSTEM,
        PROVEN_SYSTEM,
        guarantee,
        mode_of,
        parse_bundle,
        parse_manifest,
        register,
        spec,
        spec_of,
        system_of,
    )

# loaded on first use (PEP 562): a process that imports one module below (a prover's child process imports
# systems/ezkl/worker.py) does not load the registry and every system's documents (~0.4 s of pydantic models)
_LAZY = {**dict.fromkeys(("Execution", "ProofSystem", "SystemContext", "SystemSpec"), "proofmarket.systems.port"),
         **dict.fromkeys(("ATTESTED_SYSTEM", "PROVEN_SYSTEM", "guarantee", "mode_of", "parse_bundle", "parse_manifest",
                          "register", "spec", "spec_of", "system_of"), "proofmarket.systems.registry")}

__getattr__ = lazy_names(__name__, _LAZY)

Mode = str


def verify_bundle_any(doc: Any, store: ArtifactStore, *, reexecute: bool = False, model_dir: Path | None = None,
                      work_dir: Path | None = None, threads: int | None = None) -> VerifyReport:
    """Verify a bundle of any registered system (``VerifyReport``). Proven: the ZK proof and everything around
    it. Attested: signature, hashes and bindings; with ``reexecute`` also one pass against every commitment."""
    from proofmarket.systems.registry import verify_bundle

    options: dict[str, Any] = {"reexecute": reexecute, "model_dir": model_dir, "work_dir": work_dir,
                               "threads": threads} if reexecute or work_dir is not None else {}
    return verify_bundle(doc, store, **options)


__all__ = ["ATTESTED_SYSTEM", "PROVEN_SYSTEM", "Execution", "Mode", "ProofSystem", "SystemContext", "SystemSpec",
           "guarantee", "mode_of", "parse_bundle", "parse_manifest", "register", "spec", "spec_of", "system_of",
           "verify_bundle_any"]
