"""The EZKL adapter of the proof-system port (mode ``proven``, system ``ezkl-halo2-kzg-bn254``).

The EZKL code itself lives in ``proofmarket.systems.ezkl`` (calls, compiler, tuner, SRS, verifier, worker process);
this adapter is what the rest of proofmarket is meant to see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proofmarket.store import ArtifactStore
from proofmarket.systems import GUARANTEES, PROVEN_SYSTEM
from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult, Progress
from proofmarket.systems.ezkl.prover import EzklProver, ProveResult
from proofmarket.systems.ezkl.verify import VerifyReport, verify_bundle


class EzklSystem:
    system = PROVEN_SYSTEM
    mode = "proven"

    def __init__(self, prover: EzklProver) -> None:
        self.prover = prover

    @property
    def store(self) -> ArtifactStore:
        return self.prover.store

    def compile(self, source: Path, samples_doc: Any, options: CompileOptions,
                progress: Progress = lambda _: None) -> CompileResult:
        return self.prover.compile(source, samples_doc, options, progress)

    def run(self, model_id: str, request: Any, **kwargs: Any) -> ProveResult:
        return self.prover.prove(model_id, request, **kwargs)

    def verify(self, bundle: Any) -> VerifyReport:
        return verify_bundle(bundle, self.prover.store)

    def describe(self) -> dict[str, Any]:
        import ezkl

        return {"system": self.system, "mode": self.mode, "guarantee": GUARANTEES["proven"],
                "ezkl_version": getattr(ezkl, "__version__", "unknown")}

    def warm(self) -> None:
        self.prover.warm()

    @property
    def ready(self) -> bool:
        return self.prover.ready

    def close(self) -> None:
        self.prover.close()
